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
    # Nor a developer's proxy: the client honours these, loopback included (as httpx).
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture
def fast_clock() -> trio.testing.MockClock:
    """Virtual time running 20x faster than real time.

    For tests on real loopback sockets that wait for seconds: an autojump clock would
    leap ahead while bytes are in flight through the kernel, a fast clock does not.
    """
    return trio.testing.MockClock(rate=20)


@pytest.fixture
def thread_safe_autojump_clock() -> trio.testing.MockClock:
    """An autojump clock that waits 20 ms of real idleness before jumping.

    For code that hands work to a thread (``trio.to_thread``): a threshold of 0 leaps
    ahead the moment trio waits for the thread, firing deadlines that real time would
    never reach.
    """
    return trio.testing.MockClock(autojump_threshold=0.02)
