"""Dispatch's test fixtures: settings on the test's own database and topics, and started
apps (stopped afterwards). Helpers are in support.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from services.dispatch.settings import DispatchSettings
from tests.dispatch.support import Dispatch, fast_settings, start_dispatch, stop_dispatch


@pytest.fixture
def make_settings(infra, database, topic_prefix):
    def make(**overrides: Any) -> DispatchSettings:
        return fast_settings(infra, database, topic_prefix, **overrides)

    return make


@pytest.fixture
async def start(make_settings) -> AsyncIterator:
    """start(**settings) -> a running Dispatch; every one started is stopped afterwards."""
    started: list[Dispatch] = []

    async def _start(**overrides: Any) -> Dispatch:
        d = await start_dispatch(make_settings(**overrides))
        started.append(d)
        return d

    yield _start
    for d in reversed(started):
        await stop_dispatch(d)


@pytest.fixture
async def dispatch(start) -> Dispatch:
    return await start()
