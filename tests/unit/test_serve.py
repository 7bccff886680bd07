"""How every service is run: the garbage collector is tuned before the server starts."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI

from shared import serve


@pytest.fixture
def collector() -> Iterator[None]:
    """The collector as the test found it, afterwards."""
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_serve_tunes_collector_before_serving(
    collector: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, Any] = {}

    def run(app: FastAPI, **options: Any) -> None:
        seen.update(
            thresholds=gc.get_threshold(), frozen=gc.get_freeze_count(), port=options["port"]
        )

    monkeypatch.setattr(serve.uvicorn, "run", run)
    monkeypatch.setattr(serve, "configure_json_logging", lambda *_: None)
    serve.serve(FastAPI(title="test"), host="127.0.0.1", port=8123, log_level="INFO")

    assert seen["thresholds"] == serve.GC_THRESHOLDS
    assert seen["frozen"] > 0  # start-up objects left out of later collections
    assert seen["port"] == 8123
