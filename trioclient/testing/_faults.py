"""Which fault (if any) a chat request gets: the script first, then the dice.

A test that wants "the 2nd request fails with a 503, the rest succeed" scripts
`[None, "http_503"]`: scripted entries are consumed one per chat request, in order,
before any probability is rolled. A load test that wants "5 % of requests fail"
configures probabilities instead; one uniform draw per request is compared against
the cumulative shares, so at most one fault strikes and the shares are exact.

A per-request `x-trioclient-sim` header can name a fault too; it wins over both and
consumes nothing.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterable

import attrs
import trio

from ._config import FaultParams, check_fault_name
from ._http import Wire

__all__ = ["NON_STREAM_EQUIVALENT", "STREAM_EQUIVALENT", "FaultPicker", "InjectedCrash", "trickle"]

#: What a stream-only fault becomes on a non-streaming response.
NON_STREAM_EQUIVALENT: dict[str, str] = {
    "reset_mid_stream": "reset_mid_body",
    "malformed_chunk": "malformed_json",
}

#: What a body-only fault becomes on a streaming response.
STREAM_EQUIVALENT: dict[str, str] = {
    "reset_mid_body": "reset_mid_stream",
    "malformed_json": "malformed_chunk",
}


@attrs.define
class FaultPicker:
    """Decides the fault for each chat request.

    Attributes:
        rng: the server's seeded random source.
        script: pending scripted faults (None = a normal response).
    """

    rng: random.Random
    script: deque[str | None] = attrs.field(factory=deque)

    def add_script(self, faults: Iterable[str | None]) -> None:
        """Append scripted faults, validated up front so a typo fails in the test."""
        checked = [None if name is None else check_fault_name(name) for name in faults]
        self.script.extend(checked)

    def pick(self, probabilities: tuple[tuple[str, float], ...]) -> str | None:
        """The fault for the next chat request, or None."""
        if self.script:
            return self.script.popleft()
        if not probabilities:
            return None
        roll = self.rng.random()
        for name, probability in probabilities:
            if roll < probability:
                return name
            roll -= probability
        return None


class InjectedCrash(RuntimeError):
    """Raised by the `handler_crash` fault to prove one broken handler is contained."""


async def trickle(wire: Wire, params: FaultParams, payload: bytes) -> None:
    """The `slow_trickle` fault: `payload` in `trickle_bytes` writes, one per
    `trickle_interval`."""
    step = params.trickle_bytes
    for offset in range(0, len(payload), step):
        await wire.send(wire.data(payload[offset : offset + step]))
        await trio.sleep(params.trickle_interval)
