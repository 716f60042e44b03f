"""Shared fixtures. The embedded server's fixtures come from trioclient's pytest plugin,
registered through the package's ``pytest11`` entry point."""

from __future__ import annotations

import pytest
import trio.testing


@pytest.fixture(autouse=True)
def _no_ambient_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests must not pick up a developer's real key or endpoint.
    for name in ("XAI_API_KEY", "OPENAI_API_KEY", "TRIOCLIENT_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def fast_clock() -> trio.testing.MockClock:
    """Virtual time running 20x faster than real time.

    For tests on real loopback sockets that wait for seconds: an autojump clock would
    leap ahead while bytes are in flight through the kernel, a fast clock does not.
    """
    return trio.testing.MockClock(rate=20)
