"""A sans-I/O decoder for Server-Sent Events (``text/event-stream``).

Streaming chat completions arrive as an event stream: lines of ``field: value``,
with a blank line ending each event. This module turns the raw bytes of such a
stream into :class:`ServerSentEvent` values, following the WHATWG HTML standard,
section 9.2.6 "Interpreting an event stream", to the letter.

Like h11, the decoder does no I/O at all. It is a plain object you push bytes into
and pull finished events out of, so the network layer stays free to read however it
likes and the parser can be tested with ordinary synchronous functions::

    decoder = SSEDecoder()
    for chunk in chunks_from_the_network:
        for event in decoder.feed(chunk):
            if event.data == "[DONE]":
                break
            handle(event.json())
    decoder.close()

Why the care over chunk boundaries: a network read can end anywhere, in the middle
of a line, of a multi-byte UTF-8 character, of the byte-order mark, or between the
CR and the LF of a CRLF line ending. The decoder gives exactly the same events
however the bytes were split.

Why a size limit: a server that never sends the blank line ending an event would
otherwise make us buffer without bound. ``max_event_size`` turns that into a clear
:class:`SSEError`, the way h11 bounds its receive buffer.
"""

from __future__ import annotations

import codecs
import json
from typing import Any

import attrs

__all__ = ["SSEDecoder", "SSEError", "ServerSentEvent"]

# A CR that ends one chunk may be the first half of a CRLF whose LF opens the next.
_CR = "\r"
_BOM = "\ufeff"

#: One dispatched event before it becomes a :class:`ServerSentEvent`:
#: ``(event, data, id, retry)``.
_RawEvent = tuple[str, str, "str | None", "int | None"]
# A tuple, not `bytes | bytearray | memoryview`: isinstance checks a tuple faster than a
# union type, and this check runs on every network read.
_BYTES_LIKE = (bytes, bytearray, memoryview)


class SSEError(ValueError):
    """The event stream broke a limit of this decoder (the peer did it wrong).

    Raised by :meth:`SSEDecoder.feed` when a single event grows beyond
    ``max_event_size``. The decoder is unusable afterwards: every later
    :meth:`SSEDecoder.feed` raises :class:`SSEError` again, because the bytes that
    follow can no longer be placed in a known event.
    """


@attrs.frozen
class ServerSentEvent:
    """One dispatched event.

    Attributes:
        event: The event type: the last ``event:`` field of the event, or
            ``"message"`` when there was none (or it was empty).
        data: The ``data:`` lines of the event joined with ``"\\n"``.
        id: The stream's last event ID at the time this event was dispatched. It
            persists across events until an ``id:`` field changes it, which is what
            a client sends back as ``Last-Event-ID`` when it reconnects. ``None``
            when the last event ID is empty (never set, or reset by a bare ``id``).
        retry: The reconnection time in milliseconds set by a valid ``retry:``
            field inside this event's block, or ``None`` if the block had none.
    """

    event: str = "message"
    data: str = ""
    id: str | None = None
    retry: int | None = None

    def json(self) -> Any:
        """Parse :attr:`data` as JSON, as OpenAI-style streams encode each chunk.

        Raises:
            json.JSONDecodeError: ``data`` is not valid JSON (for instance the
                ``[DONE]`` sentinel that ends an OpenAI stream).
        """
        return json.loads(self.data)


class SSEDecoder:
    """Turns the bytes of an event stream into :class:`ServerSentEvent` values.

    Feed it every chunk exactly as it came off the network; each call returns the
    events that chunk completed (often none, sometimes several). Call
    :meth:`close` at the end of the stream.

    The decoder keeps three kinds of state, all from the spec: the line being read
    (possibly spread over many chunks), the buffers of the event being built (data
    lines, event type, retry), and the stream-wide last event ID and reconnection
    time, which outlive each event and are readable as :attr:`last_event_id` and
    :attr:`retry`.

    Work is linear in the input however it is chunked: a partial line is kept as a
    list of pieces joined once when its line ending arrives, never re-scanned.

    Args:
        max_event_size: The most characters one event may occupy: its accumulated
            data plus the line being read. Counted in decoded characters, which is
            never more than the bytes received. A complete line longer than what
            is left also counts, so the limit does not depend on chunking.

    Raises:
        ValueError: ``max_event_size`` is not a positive integer.
    """

    __slots__ = (
        "_closed",
        "_data_len",
        "_data_lines",
        "_decoder",
        "_error",
        "_event_retry",
        "_event_type",
        "_last_event_id",
        "_max_event_size",
        "_pending",
        "_pending_len",
        "_retry",
        "_skip_lf",
        "_started",
    )

    def __init__(self, *, max_event_size: int = 16 * 1024 * 1024) -> None:
        if (
            not isinstance(max_event_size, int)
            or isinstance(max_event_size, bool)
            or max_event_size < 1
        ):
            raise ValueError(f"max_event_size must be a positive integer, got {max_event_size!r}")
        self._max_event_size = max_event_size
        # errors="replace": the spec decodes with U+FFFD for invalid bytes rather
        # than failing; being incremental, it also holds back a multi-byte
        # character split across chunks until its last byte arrives.
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._started = False  # the first character (a possible BOM) is behind us
        self._skip_lf = False  # the last chunk ended in CR: a leading LF is its pair
        self._pending: list[str] = []  # pieces of the line not yet terminated
        self._pending_len = 0
        self._data_lines: list[str] = []  # the data buffer, one entry per data line
        self._data_len = 0  # len() of the spec's data buffer (values plus LFs)
        self._event_type = ""
        self._event_retry: int | None = None
        self._last_event_id = ""
        self._retry: int | None = None
        self._closed = False
        self._error: SSEError | None = None

    def __repr__(self) -> str:
        state = "closed" if self._closed else "failed" if self._error else "open"
        return (
            f"<SSEDecoder {state} last_event_id={self._last_event_id!r} "
            f"retry={self._retry!r} buffered={self._data_len + self._pending_len}>"
        )

    @property
    def last_event_id(self) -> str:
        """The spec's last event ID buffer: ``""`` until an ``id:`` field sets it."""
        return self._last_event_id

    @property
    def retry(self) -> int | None:
        """The last valid ``retry:`` value in milliseconds, ``None`` if none yet."""
        return self._retry

    def feed(self, data: bytes | bytearray | memoryview) -> list[ServerSentEvent]:
        """Consume the next chunk of the stream and return the events it completed.

        Args:
            data: Raw bytes exactly as received; any split is fine.

        Returns:
            The events dispatched by blank lines in this chunk, in stream order.

        Raises:
            SSEError: One event grew beyond ``max_event_size``, now or in an earlier
                call. Events completed earlier in the same chunk are lost with it.
            RuntimeError: :meth:`close` was already called.
            TypeError: ``data`` is not bytes-like (a ``str`` is a caller bug: the
                stream is bytes and this decoder owns the UTF-8 decoding).
        """
        return [ServerSentEvent(*event) for event in self.feed_raw(data)]

    def feed_raw(self, data: bytes | bytearray | memoryview) -> list[_RawEvent]:
        """:meth:`feed`, with each event as a plain ``(event, data, id, retry)`` tuple.

        For consumers that read every event of a long stream (trioclient's own chat
        streams): the same events, without building an object for each.
        """
        if self._error is not None:
            raise SSEError(f"the decoder failed earlier and cannot continue: {self._error}")
        if self._closed:
            raise RuntimeError("SSEDecoder.feed() called after close()")
        if not isinstance(data, _BYTES_LIKE):
            raise TypeError(f"SSEDecoder.feed() takes bytes, got {type(data).__name__}")
        text = self._decoder.decode(data)
        if not text:
            return []
        if not self._started:
            self._started = True
            if text[0] == _BOM:
                # Only the very first character: a BOM later on is data.
                text = text[1:]
                if not text:
                    return []
        if self._skip_lf:
            self._skip_lf = False
            if text[0] == "\n":
                text = text[1:]
        if _CR in text:
            # Within one chunk, normalising CRLF then CR to LF is exact; a CR at the
            # very end already ends its line, and its LF (if that is what follows in
            # the next chunk) must not end a second, empty line.
            self._skip_lf = text[-1] == _CR
            text = text.replace("\r\n", "\n").replace(_CR, "\n")
        lines = text.split("\n")
        tail = lines.pop()  # after the last line ending: an unfinished line
        events: list[_RawEvent]
        if lines:
            if self._pending:
                self._pending.append(lines[0])
                lines[0] = "".join(self._pending)
                self._pending = []
                self._pending_len = 0
            events = self._process_lines(lines)
        else:
            events = []
        if tail:
            self._pending.append(tail)
            self._pending_len += len(tail)
            if self._pending_len + self._data_len > self._max_event_size:
                self._fail(self._pending_len + self._data_len)
        return events

    def close(self) -> list[ServerSentEvent]:
        """Mark the end of the stream.

        The spec discards an event cut off by the end of the stream ("the
        incomplete event is not dispatched"), and an unterminated final line
        belongs to that event, so nothing is ever dispatched here. The list return
        keeps the call symmetric with :meth:`feed`, so callers can treat both
        alike. Calling it again is harmless; :meth:`feed` afterwards raises.

        Returns:
            Always an empty list.
        """
        if not self._closed:
            self._closed = True
            # Flush the UTF-8 decoder so it drops any half character it still holds.
            self._decoder.decode(b"", True)
            self._pending = []
            self._pending_len = 0
            self._data_lines = []
            self._data_len = 0
        return []

    def _fail(self, size: int) -> None:
        self._error = SSEError(
            f"server-sent event too large: {size} characters buffered without an "
            f"end of event, over max_event_size={self._max_event_size}"
        )
        raise self._error

    def _process_lines(self, lines: list[str]) -> list[_RawEvent]:
        """Interpret complete lines (without their line endings), per the spec.

        This is the hot loop of every stream, so the per-event buffers live in
        locals and are written back once at the end.
        """
        events: list[_RawEvent] = []
        limit = self._max_event_size
        data_lines = self._data_lines
        data_len = self._data_len
        event_type = self._event_type
        event_retry = self._event_retry
        last_event_id = self._last_event_id
        try:
            for line in lines:
                if line.startswith("data:"):
                    # Nearly every line of a chat stream: take it before the general case.
                    if len(line) + data_len > limit:
                        self._fail(len(line) + data_len)
                    value = line[6:] if line.startswith(" ", 5) else line[5:]
                    data_lines.append(value)
                    data_len += len(value) + 1
                    continue
                if not line:
                    # A blank line dispatches. With no data lines there is nothing
                    # to dispatch, but the event type is still reset.
                    if data_lines:
                        events.append(
                            (
                                event_type or "message",
                                # Joining with LF is the spec's "append value and LF
                                # per line, then drop the final LF".
                                "\n".join(data_lines),
                                last_event_id or None,
                                event_retry,
                            )
                        )
                        data_lines.clear()
                        data_len = 0
                    event_type = ""
                    event_retry = None
                    continue
                if len(line) + data_len > limit:
                    self._fail(len(line) + data_len)
                colon = line.find(":")
                if colon == 0:
                    continue  # a comment, often sent as a keep-alive
                if colon < 0:
                    field = line
                    value = ""
                else:
                    field = line[:colon]
                    value = line[colon + 1 :]
                    if value and value[0] == " ":
                        value = value[1:]
                if field == "data":
                    data_lines.append(value)
                    data_len += len(value) + 1
                elif field == "event":
                    event_type = value
                elif field == "id":
                    if "\0" not in value:
                        last_event_id = value
                elif field == "retry":
                    parsed = _parse_retry(value)
                    if parsed is not None:
                        event_retry = parsed
                        self._retry = parsed
                # Any other field name is ignored, as the spec requires.
        finally:
            self._data_lines = data_lines
            self._data_len = data_len
            self._event_type = event_type
            self._event_retry = event_retry
            self._last_event_id = last_event_id
        return events


def _parse_retry(value: str) -> int | None:
    """The spec's "only ASCII digits" rule; anything else leaves retry unchanged."""
    if not (value.isascii() and value.isdigit()):
        return None
    # Python refuses int() on strings of more than ~4300 digits; leading zeros do
    # not count towards the value, and a number that long is no sensible delay, so
    # it is ignored like any other unusable value.
    try:
        return int(value.lstrip("0") or "0")
    except ValueError:
        return None
