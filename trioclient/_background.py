"""Background tasks that live exactly as long as an ``async with`` block.

The batch engine, the JSONL runner and the embedded server each run helpers (workers,
a progress reporter, an accept loop) beside the caller's code. Trio's idiom for that is
a nursery opened by an async context manager, with the caller's block running inside
it. Two details make the idiom hard to get right, so it lives here once:

* An exception raised by the **block itself** (an ``assert`` in a test, a ``break``
  turned error, Ctrl-C) must come out as itself. Left to the nursery it would come out
  wrapped in an :class:`ExceptionGroup`, and ``pytest.raises(AssertionError)`` or an
  ``except ValueError`` around the block would miss it. So the block's exception is kept
  out of the nursery and raised again after the background tasks are cancelled.
* An exception raised by a **background task** means our own concurrency failed. The
  caller did not start those tasks and should not have to unpick a group: it gets one
  error (made by ``on_failure``) raised ``from`` the group, which keeps every leaf in
  ``__cause__``. A :class:`KeyboardInterrupt` (or :class:`SystemExit`) among them comes
  out as a plain :class:`KeyboardInterrupt`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import trio

__all__ = ["describe_leaves", "open_background"]


@asynccontextmanager
async def open_background(
    on_failure: Callable[[BaseExceptionGroup[BaseException]], BaseException] | None = None,
) -> AsyncIterator[trio.Nursery]:
    """A nursery for background tasks; they are cancelled when the block ends.

    Args:
        on_failure: Turns the group of a background task's errors (cancellations
            removed) into the one exception to raise. By default the group itself is
            raised.

    Raises:
        The block's own exception, unwrapped; else ``on_failure(errors)`` from the group.
    """
    body_error: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:
            try:
                yield nursery
            except trio.Cancelled:
                raise
            except BaseException as exc:
                body_error = exc
            finally:
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        _, rest = group.split(trio.Cancelled)
        if rest is None:
            raise  # only cancellations: the cancel scopes they belong to take them
        if body_error is not None:
            rest.add_note(f"while the block itself raised {type(body_error).__name__}")
        interrupts, errors = rest.split((KeyboardInterrupt, SystemExit))
        if interrupts is not None:
            raise KeyboardInterrupt() from group
        assert errors is not None
        if on_failure is None:
            raise
        raise on_failure(errors) from group
    if body_error is not None:
        raise body_error


def describe_leaves(group: BaseExceptionGroup[BaseException], most: int = 3) -> str:
    """The first few leaf errors of a group, as one line for a message."""
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        else:
            leaves.append(exc)

    walk(group)
    shown = "; ".join(f"{type(e).__name__}: {e}" for e in leaves[:most])
    more = f" and {len(leaves) - most} more" if len(leaves) > most else ""
    return shown + more
