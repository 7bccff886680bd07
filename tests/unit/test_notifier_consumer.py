"""services.notifier.consumer: a write the database refuses parks the event; others retry; a
batch of responses parks what is not a response or is refused, and registers the rest at once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from aiokafka import ConsumerRecord
from bson.errors import InvalidDocument
from pymongo.errors import AutoReconnect, OperationFailure

from services.notifier import consumer
from services.notifier.notifier import Handled
from shared.events import SurveyResponse


class Broker:
    """Records what would be published."""

    def __init__(self) -> None:
        self.published: list[dict[str, Any]] = []

    async def publish(self, value: bytes, **kwargs: Any) -> None:
        self.published.append({"value": value, **kwargs})


class Message:
    def __init__(self, value: bytes = b'{"pilot_id": "pilot-1"}') -> None:
        self.raw_message = ConsumerRecord(
            topic="pilots.announced.v1",
            partition=3,
            offset=12,
            timestamp=0,
            timestamp_type=0,
            key=b"pilot-1",
            value=value,
            checksum=None,
            serialized_key_size=7,
            serialized_value_size=len(value),
            headers=[],
        )


async def failing(exc: Exception) -> None:
    raise exc


@pytest.fixture(autouse=True)
def no_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(consumer, "RETRY_PAUSE_SECONDS", 0)


@pytest.mark.parametrize(
    "exc",
    [InvalidDocument("Key names must not contain the NULL byte"), OperationFailure("bad", 2)],
)
async def test_retrying_refused_write_parks_the_event(exc: Exception) -> None:
    broker = Broker()

    await consumer._retrying(broker, Message().raw_message, failing(exc), "notifier.pilots")  # type: ignore[arg-type]

    (parked,) = broker.published
    headers = parked["headers"]
    assert parked["topic"] == "pilots.announced.v1.dlq"
    assert parked["key"] == b"pilot-1"
    assert headers["dlq-reason"] == "refused"
    assert headers["dlq-group"] == "notifier.pilots"
    assert headers["dlq-error"].startswith("refused by the database: ")
    assert '"offset": 12' in headers["dlq-source"]


@pytest.mark.parametrize(
    "exc",
    [AutoReconnect("connection closed"), OperationFailure("database is locked", 1), OSError()],
)
async def test_retrying_transient_failure_raises_and_parks_nothing(exc: Exception) -> None:
    broker = Broker()

    with pytest.raises(type(exc)):
        await consumer._retrying(broker, Message().raw_message, failing(exc), "notifier.pilots")  # type: ignore[arg-type]

    assert broker.published == []


async def test_parse_garbage_parked_as_undecodable() -> None:
    broker = Broker()
    message = Message(b"\xff garbage")

    event = await consumer._parse(
        broker, message.raw_message, consumer.PilotAnnounced, "notifier.pilots"
    )  # type: ignore[arg-type]

    assert event is None
    assert broker.published[0]["headers"]["dlq-reason"] == "undecodable"


class Registering:
    """A notifier whose database refuses the responses named in `refuse` (one at a time it
    raises, as a single write does), or every batch with `refuse_batches`."""

    def __init__(self, refuse: set[str], *, refuse_batches: bool = False) -> None:
        self.refuse = refuse
        self.refuse_batches = refuse_batches
        self.batches: list[list[str]] = []

    async def on_responses(self, responses: list[SurveyResponse]) -> Handled:
        self.batches.append([r.response_id for r in responses])
        if self.refuse_batches:
            raise InvalidDocument("not known for which response")
        refused = [
            (n, InvalidDocument("refused"))
            for n, r in enumerate(responses)
            if r.response_id in self.refuse
        ]
        return Handled(len(responses) - len(refused), list(refused))

    async def on_response(self, response: SurveyResponse) -> int:
        self.batches.append([response.response_id])
        if response.response_id in self.refuse:
            raise InvalidDocument("refused")
        return 1


@pytest.fixture
def batch(make_event: Callable[..., SurveyResponse]) -> list[ConsumerRecord[bytes, bytes]]:
    values = [make_event(response_id=f"generic:{n}").model_dump_json().encode() for n in range(3)]
    return [Message(value).raw_message for value in (values[0], b"\xff garbage", *values[1:])]


async def test_handle_responses_garbage_and_refused_parked_rest_registered_at_once(
    batch: list[ConsumerRecord[bytes, bytes]],
) -> None:
    broker, notifier = Broker(), Registering({"generic:1"})

    await consumer.handle_responses(batch, notifier, broker, "notifier.registry")  # type: ignore[arg-type]

    assert notifier.batches == [["generic:0", "generic:1", "generic:2"]]
    reasons = [(p["headers"]["dlq-reason"], p["value"]) for p in broker.published]
    assert reasons == [("undecodable", b"\xff garbage"), ("refused", batch[2].value)]


async def test_handle_responses_refusal_of_no_known_response_taken_one_at_a_time(
    batch: list[ConsumerRecord[bytes, bytes]],
) -> None:
    broker, notifier = Broker(), Registering({"generic:2"}, refuse_batches=True)

    await consumer.handle_responses(batch, notifier, broker, "notifier.registry")  # type: ignore[arg-type]

    assert notifier.batches[1:] == [["generic:0"], ["generic:1"], ["generic:2"]]
    assert [p["headers"]["dlq-reason"] for p in broker.published] == ["undecodable", "refused"]
    assert broker.published[1]["value"] == batch[3].value


async def test_handle_responses_transient_failure_raises_parks_nothing(
    batch: list[ConsumerRecord[bytes, bytes]],
) -> None:
    broker = Broker()

    class Away(Registering):
        async def on_responses(self, responses: list[SurveyResponse]) -> Handled:
            raise AutoReconnect("connection closed")

    with pytest.raises(AutoReconnect):
        await consumer.handle_responses(batch, Away(set()), broker, "notifier.registry")  # type: ignore[arg-type]

    assert [p["headers"]["dlq-reason"] for p in broker.published] == ["undecodable"]
