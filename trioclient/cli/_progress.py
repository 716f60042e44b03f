"""A live progress display on stderr, drawn by rich, only when a person is watching.

A batch of thousands of requests runs for minutes; the person at the terminal wants to
know how far it got (done/total), how fast it goes (requests/s, time left), and why it
might be slow (requests in flight, 429s from the server, tokens spent). When stderr is
a pipe or a file nobody watches it live, so the display stays off and the command's
output stays clean for the next program.

rich is imported here only, and only when a display is actually shown, so neither
``import trioclient`` nor a piped CLI run pays for it.

The display is redrawn by a trio task (:meth:`LiveProgress.run`) rather than rich's
own refresh thread: one more thread would have to share rich's state with the trio
thread, and a redraw ten times a second costs nothing next to the requests it reports.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any, NoReturn

import attrs
import trio

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

__all__ = ["LiveProgress", "Snapshot", "stats_text"]


@attrs.frozen
class Snapshot:
    """What the display shows, read from the running job each redraw.

    Attributes:
        done: Requests that ended (answered or failed for good).
        total: Requests in the job, if known (``None`` for a stream of unknown length).
        failed: Of ``done``, those that failed.
        in_flight: Requests on the wire now.
        rate_limited: 429 answers so far (each one was waited out and retried).
        tokens: Tokens used so far (prompt + completion).
    """

    done: int
    total: int | None
    failed: int = 0
    in_flight: int = 0
    rate_limited: int = 0
    tokens: int = 0


def stats_text(snapshot: Snapshot, elapsed: float) -> str:
    """The figures beside the bar: rate, in flight, 429s, tokens (and failures, if any)."""
    rate = snapshot.done / elapsed if elapsed > 0 else 0.0
    parts = [
        f"{rate:.0f} req/s",
        f"{snapshot.in_flight} in flight",
        f"{snapshot.rate_limited} x 429",
        f"{_short(snapshot.tokens)} tokens",
    ]
    if snapshot.failed:
        parts.append(f"{snapshot.failed} failed")
    return " · ".join(parts)


def _short(n: int) -> str:
    if n < 10_000:
        return str(n)
    if n < 10_000_000:
        return f"{n / 1000:.0f}k"
    return f"{n / 1_000_000:.0f}M"


class LiveProgress:
    """Redraws a progress bar from ``snapshot()`` until cancelled.

    ::

        progress = LiveProgress("batch", job_snapshot)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(progress.run)
            await do_the_job()
            nursery.cancel_scope.cancel()   # draws the final state, then stops

    Args:
        title: The label before the bar.
        snapshot: Returns the job's figures now; called on every redraw.
        stream: Where to draw (default ``sys.stderr``).
        enabled: Draw at all? Default: only when ``stream`` is a terminal.
        console: A rich ``Console`` to draw on (tests pass one writing to a buffer).
        interval: Seconds between redraws.
    """

    def __init__(
        self,
        title: str,
        snapshot: Callable[[], Snapshot],
        *,
        stream: IO[str] | None = None,
        enabled: bool | None = None,
        console: Console | None = None,
        interval: float = 0.1,
    ) -> None:
        self.title = title
        self.snapshot = snapshot
        self.interval = interval
        stream = sys.stderr if stream is None else stream
        if enabled is None:
            enabled = console is not None or _isatty(stream)
        self.enabled = enabled
        self._stream = stream
        self._console = console
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._started_at = 0.0

    def _start(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        console = self._console or Console(file=self._stream)
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(bar_width=16),
            MofNCompleteColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(compact=True),
            TextColumn("{task.fields[stats]}"),
            console=console,
            auto_refresh=False,
            transient=False,
        )
        self._progress.start()
        self._task = self._progress.add_task(self.title, total=None, stats="")
        self._started_at = trio.current_time()

    def update(self) -> None:
        """Redraw once from a fresh snapshot."""
        if not self.enabled:
            return
        if self._progress is None:
            self._start()
        assert self._progress is not None and self._task is not None
        snap = self.snapshot()
        fields: dict[str, Any] = {"stats": stats_text(snap, trio.current_time() - self._started_at)}
        self._progress.update(self._task, completed=snap.done, total=snap.total, **fields)
        self._progress.refresh()

    def stop(self) -> None:
        """Draw the final state and leave the terminal as it was."""
        if self._progress is not None:
            self.update()
            self._progress.stop()
            self._progress = None

    async def run(self) -> NoReturn:
        """Redraw every ``interval`` seconds until cancelled, then draw the final state."""
        try:
            while True:
                self.update()
                await trio.sleep(self.interval)
        finally:
            self.stop()


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
