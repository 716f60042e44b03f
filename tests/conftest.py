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
def thread_safe_autojump_clock() -> trio.testing.MockClock:
    """An autojump clock that waits 20 ms of real idleness before jumping.

    Virtual time stands still while the CPU works, so a busy machine cannot turn slow
    work into virtual seconds that fire a deadline; it leaps to the next deadline only
    when nothing has happened for 20 ms of real time.

    For code that hands work to a thread (``trio.to_thread``): a threshold of 0 leaps
    ahead the moment trio waits for the thread, firing deadlines that real time would
    never reach. And for tests on real loopback sockets in the test's own trio loop: a
    byte written on loopback is readable at once, and the threshold covers the rare
    moment the kernel takes to deliver it. (A clock running at a fixed multiple of
    real time is no substitute: under load it turns CPU work into virtual seconds.)
    """
    return trio.testing.MockClock(autojump_threshold=0.02)
