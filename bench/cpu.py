"""The CPU time processes use, by the OS's own accounting (psutil): what a benchmark reads to show
whether the code or the machine limits a figure. The services, the load generator and the
servers of the stack (Kafka, FerretDB) all share this machine."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

from bench.load import REPO

STACK_SERVERS = ("kafka", "ferretdb")


def stack_processes() -> dict[str, psutil.Process]:
    """The stack's servers running on this machine, by name, from their pid files."""
    pids = Path(os.environ.get("STACK_DIR", REPO / ".stack")) / "pids"
    found = {}
    for name in STACK_SERVERS:
        try:
            found[name] = psutil.Process(int((pids / f"{name}.pid").read_text().strip()))
        except (OSError, ValueError, psutil.Error):
            continue  # a stack run elsewhere: its CPU is not this machine's to count
    return found


def cpu_seconds(process: psutil.Process) -> float:
    """User and system CPU time of `process` so far; 0 once it is gone."""
    try:
        times = process.cpu_times()
    except psutil.Error:
        return 0.0
    return float(times.user + times.system)


@contextmanager
def spent(processes: dict[str, psutil.Process], seconds: dict[str, float]) -> Iterator[None]:
    """Add to `seconds` the CPU seconds each process used during the block."""
    before = {name: cpu_seconds(process) for name, process in processes.items()}
    yield
    for name, process in processes.items():
        seconds[name] = seconds.get(name, 0.0) + cpu_seconds(process) - before[name]


@contextmanager
def metered(processes: dict[str, psutil.Process], cores: dict[str, float]) -> Iterator[None]:
    """Fill `cores` with the CPU each process used during the block, in cores (CPU seconds per
    second of wall time)."""
    used: dict[str, float] = {}
    started = time.perf_counter()
    with spent(processes, used):
        yield
    wall = time.perf_counter() - started
    for name, seconds in used.items():
        cores[name] = seconds / wall
