"""The limiter token of an open stream, given back even if the stream is dropped.

A stream outlives the call that opened it, so its token is held *on behalf of* an
object rather than a task (``CapacityLimiter.acquire_on_behalf_of``). That object is a
:class:`StreamToken`, not the stream: the limiter keeps its borrowers alive, and a
stream it kept alive could never be collected.

A stream closed with ``async with`` or ``aclose()`` gives the token back at once. One
dropped unfinished and never closed (the openai idiom ``async for chunk in stream:
break``) gives it back, and closes its connection, when it is garbage-collected: its
``__del__`` calls :meth:`StreamToken.abandon`, which hands the work to the trio thread
with ``run_sync_soon`` (safe from a finalizer and from any thread) and warns with a
:class:`ResourceWarning`, as trio and httpx do for what was not closed.
"""

from __future__ import annotations

import warnings
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

import httpx
import trio

from ._attempt import close_stream

if TYPE_CHECKING:
    from ._gate import TokenHold
    from ._requester import Requester

__all__ = ["StreamManager", "StreamToken"]


class StreamToken:
    """Whom a stream's limiter token is lent to; see the module docstring."""

    __slots__ = ("_requester", "_trio_token", "held")

    def __init__(self, requester: Requester) -> None:
        self._requester = requester
        self._trio_token: trio.lowlevel.TrioToken | None = None
        self.held = False

    def hold(self) -> TokenHold:
        """The hold the retry loop takes the token with, on behalf of this object."""
        return self._requester.token_hold(self)

    def opened(self) -> None:
        """The stream opened holding the token: it is in flight until released."""
        self.held = True
        self._trio_token = trio.lowlevel.current_trio_token()
        self._requester.counters.in_flight += 1

    def release(self) -> None:
        """Give the token back (idempotent; on the trio thread)."""
        if self.held:
            self.held = False
            self._requester.counters.in_flight -= 1
            self._requester.limiter.release_on_behalf_of(self)

    def abandon(self, what: str, response: httpx.Response | None, body: Any) -> None:
        """From a dropped stream's ``__del__``: release the token and close the
        connection on the trio thread, then warn. Does nothing if nothing is held."""
        if not self.held:
            return
        token = self._trio_token
        if token is not None:
            try:
                token.run_sync_soon(self._release_abandoned, response, body)
            except trio.RunFinishedError:
                pass  # the run is over: its limiter and sockets went with it
        warnings.warn(
            f"{what} was dropped before it finished and was never closed; its limiter "
            "token and connection were given back when it was collected: use "
            "`async with` (or `await stream.aclose()`)",
            ResourceWarning,
            stacklevel=2,
        )

    def _release_abandoned(self, response: httpx.Response | None, body: Any) -> None:
        self.release()
        if response is not None:
            trio.lowlevel.spawn_system_task(close_stream, response, body)



class _Closable(Protocol):
    async def aclose(self) -> None: ...


S = TypeVar("S", bound=_Closable)


class StreamManager(Generic[S]):
    """``async with client.chat.completions.stream(...) as stream:`` (and
    ``client.responses.stream(...)``): opens on enter, closes on exit, whatever happened
    in between."""

    def __init__(self, open_stream: Callable[[], Awaitable[S]]) -> None:
        self._open = open_stream
        self._stream: S | None = None

    async def __aenter__(self) -> S:
        self._stream = await self._open()
        return self._stream

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._stream is not None:
            await self._stream.aclose()
