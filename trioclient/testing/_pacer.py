"""One timer for every paced stream: cheap, drift-free sends for thousands of streams.

A server pacing 1,000 streams at 20 tokens/s sends 20,000 chunks a second from one
Python thread, so the cost per chunk decides whether it keeps to schedule.
`trio.sleep_until` then `send_all` per chunk costs a cancel scope, a `Cancelled`
exception unwinding to it (that is how trio ends a sleep), two task switches and
trio's send bookkeeping: most of the budget.

So the pacer keeps one heap of due times for the whole server and one background
task that sleeps until the earliest of them. A streaming handler hands it the
whole schedule (`send_steps`: a list of (due time, bytes)) and parks once; at each
due time the pacer itself writes that stream's bytes with a plain non-blocking
`os.write`, records how late it was, and re-queues the stream's next step. The
handler is woken only when its schedule is done, when the socket buffer is full
(it then waits for room with trio's `send_all` and hands the rest back) or when the
peer is gone. Under load one wake-up of the pacer serves many due chunks.

Times come from trio's clock (`trio.current_time`, `trio.move_on_at`), so tests on
a `MockClock` still work; each step is due at its own absolute time, so a late
step does not push the later ones back (no drift). A cancelled handler's entry is
dropped lazily when it comes due.
"""

from __future__ import annotations

import heapq
import itertools
import math
import os
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import attrs
import trio

__all__ = ["Pacer"]


@attrs.define(eq=False)
class _Job:
    """One stream's schedule, written by the pacer step by step."""

    fd: int
    steps: Sequence[tuple[float, bytes]]
    lags: deque[float] | None
    index: int = 0
    task: Any = None
    leftover: bytes = b""
    error: OSError | None = None

    def write_due(self, now: float) -> float | None:
        """Write every step due by `now` in one write; the next due time, or None to
        wake the handler (done, socket full, or peer gone)."""
        steps = self.steps
        index = self.index
        parts = []
        lags = self.lags
        while index < len(steps) and steps[index][0] <= now:
            when, data = steps[index]
            parts.append(data)
            if lags is not None:
                lags.append(now - when)
            index += 1
        self.index = index
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        try:
            sent = os.write(self.fd, data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            self.error = exc
            return None
        if sent < len(data):
            self.leftover = data[sent:]
            return None
        return steps[index][0] if index < len(steps) else None


@attrs.define(eq=False)
class Pacer:
    """Parks tasks until their due time; `run` must be running in a nursery."""

    _heap: list[list[Any]] = attrs.field(factory=list)
    _order: itertools.count[int] = attrs.field(factory=itertools.count)
    _scope: trio.CancelScope | None = None

    async def run(self) -> None:
        """Wake due tasks forever (until cancelled)."""
        heap = self._heap
        while True:
            now = trio.current_time()
            while heap and heap[0][0] <= now:
                entry = heapq.heappop(heap)
                item = entry[2]
                if item is None:  # cancelled while parked
                    continue
                if type(item) is _Job:
                    next_time = item.write_due(now)
                    if next_time is not None:
                        entry[0] = next_time
                        entry[1] = next(self._order)
                        heapq.heappush(heap, entry)
                        continue
                    job, item = item, item.task
                    job.task = None
                entry[2] = None
                trio.lowlevel.reschedule(item)
            target = heap[0][0] if heap else math.inf
            with trio.move_on_at(target) as scope:
                self._scope = scope
                await trio.sleep_forever()
            self._scope = None

    async def wait_until(self, when: float) -> None:
        """Return at `when` (trio's clock), or at once (with a checkpoint) if it has passed.

        Raises:
            trio.Cancelled: if the caller is cancelled while parked.
        """
        if when <= trio.current_time():
            await trio.lowlevel.checkpoint()
            return
        entry: list[Any] = [when, next(self._order), trio.lowlevel.current_task()]
        heapq.heappush(self._heap, entry)
        scope = self._scope
        if scope is not None and when < scope.deadline:
            scope.deadline = when  # wake the pacer earlier for this newcomer

        def abort(_: Any) -> trio.lowlevel.Abort:
            entry[2] = None  # the pacer will drop the entry when it comes due
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)

    async def send_steps(
        self,
        fd: int,
        steps: Sequence[tuple[float, bytes]],
        send_all: Callable[[bytes], Awaitable[None]],
        lags: deque[float] | None = None,
    ) -> None:
        """Write each (due time, bytes) step to socket `fd` at its due time.

        Args:
            fd: the connection's socket; nothing else may write to it meanwhile.
            steps: the schedule, in time order.
            send_all: how to write what a full socket buffer refused (waits for room).
            lags: where to record each step's lateness in seconds, if anywhere.

        Raises:
            trio.BrokenResourceError: the peer went away.
        """
        if not steps:
            return
        job = _Job(fd, steps, lags)
        while job.index < len(steps):
            when = steps[job.index][0]
            entry: list[Any] = [when, next(self._order), job]
            heapq.heappush(self._heap, entry)
            scope = self._scope
            if scope is not None and when < scope.deadline:
                scope.deadline = when
            job.task = trio.lowlevel.current_task()

            def abort(_: Any, entry: list[Any] = entry) -> trio.lowlevel.Abort:
                entry[2] = None
                return trio.lowlevel.Abort.SUCCEEDED

            await trio.lowlevel.wait_task_rescheduled(abort)
            if job.error is not None:
                raise trio.BrokenResourceError(f"write failed: {job.error}") from job.error
            if job.leftover:
                leftover, job.leftover = job.leftover, b""
                await send_all(leftover)
