"""One system of the services as real processes serves a test module (tests/e2e/system.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.system import Proc, System, start_system, stop_cleanly, stop_system
from tests.infra import Infra, free_port

__all__ = ["Proc", "System", "free_port", "start_system", "stop_system"]  # still imported from here


@pytest.fixture(scope="module")
def system(infra: Infra) -> Iterator[System]:
    system = start_system(infra)
    yield system
    stop_cleanly(system)
