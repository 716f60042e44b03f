"""A small sampling profiler: where a process's CPU goes, by part, without tracing.

A deterministic profiler (cProfile) adds a cost to every call, so it inflates code
made of many small calls (trioclient's request path, h11's state machine) more than
code that spends its time in C (``json``, a system call): its shares are not the
shares of the real run. Sampling changes nothing between samples (each sample also
wakes trio once, through its signal wake-up socket: a small, even cost). Every ``interval``
seconds of the process's CPU time (``ITIMER_PROF``, user and system time both) the
kernel sends ``SIGPROF``; the handler looks at the Python stack the main thread was
running and counts the sample for the part that stack belongs to. Time in a C
function (a ``write(2)``, the JSON decoder) is counted for the Python frame that
called it, which is where it belongs.

A part is named by the innermost frame a rule claims (see :data:`PARTS`): a sample
taken inside h11 counts for h11 even when trioclient's transport called it. POSIX
only (``setitimer``); the main thread only, which is where trio runs.
"""

from __future__ import annotations

import collections
import contextlib
import signal
import sys
from collections.abc import Iterator
from types import FrameType

__all__ = ["PARTS", "Samples", "part_of", "sampling"]

# (part, what the frame's file name holds (any of), function names or None for any).
# The innermost frame a rule claims names the part; rules are tried in this order.
# attrs builds its classes' methods in files named like "<attrs generated init
# trio._core._run.CancelScope>", hence the dotted names (after a space, so that
# benchmarks/contenders/h11_trio.py is not taken for trio) beside the paths.
_SCOPE_METHODS = frozenset(
    {
        "__enter__", "__exit__", "_close", "_might_change_registered_deadline", "deadline",
        "__attrs_post_init__", "recalculate", "close", "_activate_cancel_status",
        "parent_cancellation_is_visible_to_us", "add", "remove", "_prune",
    }
)  # fmt: skip
PARTS: tuple[tuple[str, tuple[str, ...], frozenset[str] | None], ...] = (
    ("h11 (HTTP/1.1 parsing and state)", ("/h11/",), None),
    ("json (decode and encode)", ("/json/",), None),
    ("trio cancel scopes (one per attempt)", (" trio._core._run.Cancel",), None),
    ("trio cancel scopes (one per attempt)", ("/trio/_core/_run.py",), _SCOPE_METHODS),
    ("trio capacity limiter", ("/trio/_sync.py", "/trio/_core/_parking_lot.py"), None),
    ("trio (scheduler, I/O waits, clock)", ("/trio/", "/outcome/", " trio."), None),
    ("httpx Request, Response, Headers, URL", ("/httpx/",), None),
    ("trioclient typed models", ("/trioclient/_models.py", "trioclient._models."), None),
    ("trioclient transport (and its write(2) and read(2))", ("/trioclient/_transport.py",), None),
    ("trioclient request path (the rest)", ("/trioclient/", "trioclient."), None),
    ("the benchmark's own loop", ("/benchmarks/",), None),
)
OTHER = "other (interpreter, stdlib)"


def part_of(frame: FrameType | None) -> str:
    """The part a stack belongs to: the innermost frame a rule of :data:`PARTS` claims."""
    while frame is not None:
        code = frame.f_code
        filename = code.co_filename.replace("\\", "/")
        for part, places, names in PARTS:
            if (names is None or code.co_name in names) and any(p in filename for p in places):
                return part
        frame = frame.f_back
    return OTHER


class Samples:
    """The samples counted by part (:func:`sampling` fills it)."""

    def __init__(self) -> None:
        self.by_part: collections.Counter[str] = collections.Counter()

    @property
    def total(self) -> int:
        return sum(self.by_part.values())

    def shares(self) -> dict[str, float]:
        """Each part's share of all samples, largest first."""
        total = self.total or 1
        return {part: n / total for part, n in self.by_part.most_common()}


@contextlib.contextmanager
def sampling(interval: float = 0.001) -> Iterator[Samples]:
    """Count a sample every ``interval`` seconds of CPU time while the block runs (or
    every tick of the kernel's timer, if that is coarser: 4 ms at 250 Hz).

    Raises:
        RuntimeError: Not on a POSIX system, or not in the main thread.
    """
    if not hasattr(signal, "setitimer") or sys.platform == "win32":
        raise RuntimeError("sampling needs setitimer(ITIMER_PROF): POSIX only")
    samples = Samples()

    def on_sample(_signum: int, frame: FrameType | None) -> None:
        samples.by_part[part_of(frame)] += 1

    previous = signal.signal(signal.SIGPROF, on_sample)
    signal.setitimer(signal.ITIMER_PROF, interval, interval)
    try:
        yield samples
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0, 0)
        signal.signal(signal.SIGPROF, previous)
