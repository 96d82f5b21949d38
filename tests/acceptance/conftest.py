"""Fixtures shared by the tests that start `coda-sync` processes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from worker_processes import start_emulator

from worker.emulator import CodaEmulator


@pytest.fixture
def coda() -> Iterator[CodaEmulator]:
    """The emulator with the default tables of `start_emulator`; modules may override it."""
    emulator = start_emulator()
    try:
        yield emulator
    finally:
        emulator.stop()
