"""One attempt: send one request, under its own deadlines, and classify what came back.

Both kinds of attempt live here: :func:`complete_once` reads a whole JSON answer, and
:func:`open_stream_once` opens an event stream and reads up to its first event. The
retry loop around them is the requester's (:mod:`trioclient._requester`); what an
attempt returns or raises is all it knows of them.

Everything here runs inside the task of the request it serves, so each deadline is a
plain trio cancel scope around the await it bounds. A scope of *ours* that fires is
turned into :class:`~trioclient.APITimeoutError` (retryable) by :func:`timeout_error`,
the one place that words a timeout; a scope of the caller's that fires is left alone
and cancels the call the trio way.

The classification is one function, :func:`raise_for_status`, shared by the plain and
the streaming paths, so both read an error response the same way.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
import trio

from ._config import Timeout
from ._exceptions import (
    APIConnectionError,
    APIError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    IncompleteStreamError,
    ResponseTooLargeError,
    status_error_class,
)
from ._pacer import HEADER_BUDGET_EXTENSION, PACER_EXTENSION

if TYPE_CHECKING:
    from ._models import ChatCompletion
    from ._transport import BodyStream

__all__ = [
    "Sender",
    "client_sender",
    "close_response",
    "close_stream",
    "complete_once",
    "open_stream_once",
    "read_stream_piece",
    "parse_chat_completion",
    "timeout_error",
    "error_detail",
    "parse_json",
    "raise_for_status",
    "read_body",
    "send",
    "translate_transport_error",
    "transport_sender",
]

T = TypeVar("T")

#: Sends a request and returns once the response headers are in (body unread).
Sender = Callable[[httpx.Request], Awaitable[httpx.Response]]


def transport_sender(transport: httpx.AsyncBaseTransport) -> Sender:
    """The fast path: hand the request straight to the transport (no ``AsyncClient.send``:
    no auth flow, cookies or redirects to pay for on every request)."""
    from ._transport import TrioTransport  # not on import: h11 comes with it

    handle = transport.handle_async_request
    if type(transport) is TrioTransport:
        # Ours already ties every response to its request: one coroutine less per
        # request than the wrapper below.
        return handle

    async def send_via_transport(request: httpx.Request) -> httpx.Response:
        response = await handle(request)
        response.request = request
        return response

    return send_via_transport


def client_sender(client: httpx.AsyncClient) -> Sender:
    """Through a caller's :class:`httpx.AsyncClient`: its proxies, TLS and hooks apply.

    Redirects are never followed: the API key must not travel to another host.
    """

    async def send_via_client(request: httpx.Request) -> httpx.Response:
        return await client.send(request, stream=True, follow_redirects=False)

    return send_via_client


def translate_transport_error(exc: Exception, request: httpx.Request) -> APIError:
    """An httpx (or socket) failure as one of ours, naming the endpoint."""
    where = f"{request.method} {request.url}"
    if isinstance(exc, httpx.TimeoutException):
        return APITimeoutError(f"timed out talking to {where}: {exc}", request=request)
    detail = str(exc) or type(exc).__name__
    return APIConnectionError(f"connection error on {where}: {detail}", request=request)


async def send(sender: Sender, request: httpx.Request) -> httpx.Response:
    """Send ``request`` and wait for the response headers.

    The caller's cancel scope bounds the wait (``Timeout.first_byte``/``total``).
    """
    try:
        response = await sender(request)
    except APIError:
        raise
    except (httpx.LocalProtocolError, httpx.UnsupportedProtocol) as exc:
        # The request itself cannot be sent (an illegal header from extra_headers or
        # default_headers, a scheme no transport speaks): bad input, never retried.
        raise ValueError(f"cannot send this request: {exc}") from exc
    except (httpx.HTTPError, OSError, trio.BrokenResourceError) as exc:
        raise translate_transport_error(exc, request) from exc
    extensions = request.extensions
    pacer = extensions.get(PACER_EXTENSION)
    if pacer is None:
        pacer = extensions.get(HEADER_BUDGET_EXTENSION)  # the client's, for a plain call
    if pacer is not None:
        pacer.after_response(response)
    return response


async def read_body(
    response: httpx.Response,
    timeout: Timeout,
    max_bytes: int,
    scope: trio.CancelScope | None = None,
    total_at: float = math.inf,
) -> bytes:
    """Read the whole body, each read within ``timeout.idle``, at most ``max_bytes``.

    With ``scope`` (the attempt's own cancel scope), its deadline is moved to the
    nearer of ``total_at`` and the idle deadline before each read, and the caller
    reports the timeout; without one, a scope of its own raises
    :class:`~trioclient.APITimeoutError` on an idle stall.

    The response is closed when this returns or raises, so its connection goes back to
    the pool (or is dropped) at once.
    """
    if scope is None:
        with trio.CancelScope() as own:
            body = await read_body(response, timeout, max_bytes, own, total_at)
        if own.cancelled_caught:
            raise timeout_error(response.request, "idle", timeout.idle)
        return body
    request = response.request
    try:
        # One pass over the head: each httpx.Headers lookup scans it anew, and a
        # missing name raises KeyError inside.
        declared: bytes | None = None
        encoded = False
        # httpx keeps each header as (raw name, lower-case name, value): read the
        # lower-case names where they are, rather than copy the list to lower them again
        # (`Headers.raw` builds a new list on every call). Private, and pinned by
        # tests/test_transport_heads.py, as the transport's own use of it is.
        for _, name, value in response.headers._list:
            if name == b"content-length":
                declared = value if declared is None else declared + b", " + value
            elif name == b"content-encoding":
                encoded = True
        if declared is not None and declared.isdigit() and int(declared) > max_bytes:
            raise ResponseTooLargeError(
                f"response of {int(declared)} bytes (Content-Length) exceeds "
                f"max_response_bytes={max_bytes}",
                request=request,
            )
        if encoded:
            chunks_iter = response.aiter_bytes()
        else:
            chunks_iter = response.stream.__aiter__()  # type: ignore[union-attr]
        # Our own transport's stream says when it holds no more: then the last chunk
        # needs no new idle deadline and no further read (the usual answer is one
        # chunk, and renewing a deadline costs about half as much as entering a scope).
        ours = chunks_iter if type(chunks_iter) is _body_stream() else None
        # Most answers come whole with their head: taken at once, with nothing to
        # wait for, there is no idle deadline to set.
        whole = None if ours is None else ours.take_whole()
        chunks: list[bytes] = []
        if whole is not None:
            if len(whole) > max_bytes:
                raise _too_large(max_bytes, request)
            chunks.append(whole)
        else:
            size = 0
            idle = math.inf if timeout.idle is None else timeout.idle
            scope.deadline = min(total_at, trio.current_time() + idle)
            async for chunk in chunks_iter:
                size += len(chunk)
                if size > max_bytes:
                    raise _too_large(max_bytes, request)
                chunks.append(chunk)
                if ours is not None and ours.at_end:
                    break
                scope.deadline = min(total_at, trio.current_time() + idle)
    except APIError:
        await close_response(response)
        raise
    except (httpx.HTTPError, OSError, trio.BrokenResourceError) as exc:
        await close_response(response)
        raise translate_transport_error(exc, request) from exc
    except BaseException:
        await close_response(response)
        raise
    if encoded:
        await response.aclose()  # (aiter_bytes closed it already)
    else:
        # Read to its end: the stream is closed directly. Response.aclose() wraps the
        # same call in a generator-based context manager, to tag an httpx error with
        # its request; a stream read to its end has nothing left to fail on.
        response.is_closed = True
        if ours is None or not ours.at_end:  # (ours at its end holds nothing to close)
            await response.stream.aclose()  # type: ignore[union-attr]
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _too_large(max_bytes: int, request: httpx.Request) -> ResponseTooLargeError:
    return ResponseTooLargeError(
        f"response body exceeds max_response_bytes={max_bytes}", request=request
    )


async def close_response(response: httpx.Response) -> None:
    """Close a response we are abandoning, even while being cancelled.

    Shielded, with its own short deadline: closing must not be skipped by the
    cancellation that made us abandon it, and must not hang either.
    """
    with trio.CancelScope(shield=True), trio.move_on_after(2.0):
        try:
            await response.aclose()
        except Exception:  # the connection is being dropped anyway
            pass


async def close_stream(response: httpx.Response | None, body: Any) -> None:
    """Close an event stream being abandoned: its byte iterator (a decoding one holds
    the raw stream), then its response; shielded, each with a short deadline."""
    if body is not None and hasattr(body, "aclose"):
        with trio.CancelScope(shield=True), trio.move_on_after(2.0):
            try:
                await body.aclose()
            except Exception:  # the connection is being dropped anyway
                pass
    if response is not None:
        await close_response(response)


def _snippet(body: bytes, limit: int = 200) -> str:
    text = body[: limit * 4].decode("utf-8", "replace").strip()
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


def error_detail(body: object) -> str | None:
    """The human-readable message of an error body, in the shapes servers use."""
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict):
            message = error.get("message")
            if isinstance(message, str) and message:
                return message
        elif isinstance(error, str) and error:
            return error
        message = body.get("message") or body.get("detail")
        if isinstance(message, str) and message:
            return message
    return None


def _standard_reason(status: int) -> str:
    import http  # an error's path only: building HTTPStatus costs ms at import

    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""


def raise_for_status(response: httpx.Response, body: bytes) -> None:
    """Raise the right :class:`~trioclient.APIStatusError` for a non-2xx response.

    A 3xx is an error too, naming where it pointed: redirects are not followed for API
    calls, so the key never goes to another host.
    """
    status = response.status_code
    if 200 <= status < 300:
        return
    request = response.request
    parsed: object
    try:
        parsed = json.loads(body) if body else None
    except ValueError:
        parsed = body.decode("utf-8", "replace")
    reason = response.reason_phrase or _standard_reason(status)
    if 300 <= status < 400:
        location = response.headers.get("location", "(no Location header)")
        message = (
            f"{status} {reason}: the server redirected {request.url} to {location}; "
            "redirects are not followed for API calls (check base_url)"
        )
        raise APIStatusError(message, response=response, body=parsed, request=request)
    detail = error_detail(parsed)
    if detail is None:
        kind = response.headers.get("content-type", "no content type")
        detail = f"({kind}) {_snippet(body)}" if body else "(empty body)"
    message = f"{status} {reason}: {detail}" if reason else f"{status}: {detail}"
    request_id = response.headers.get("x-request-id")
    if request_id:
        message += f" (request id {request_id})"
    raise status_error_class(status)(message, response=response, body=parsed, request=request)


def parse_json(response: httpx.Response, body: bytes) -> Any:
    """The JSON of a 2xx body, or a validation error that shows what came instead."""
    try:
        return json.loads(body)
    except ValueError as exc:
        kind = response.headers.get("content-type", "no content type")
        shown = _snippet(body) if body else "(empty body)"
        raise APIResponseValidationError(
            f"invalid response: body is not JSON ({kind}, {len(body)} bytes): {shown}",
            request=response.request,
            body=body.decode("utf-8", "replace"),
            response=response,
        ) from exc


def timeout_error(
    request: httpx.Request,
    setting: str,
    seconds: float | None,
    *,
    stream: bool = False,
    chunks: int | None = None,
    partial: Any = None,
) -> APITimeoutError:
    """The error for a deadline of ours that ran out: which :class:`Timeout` field, how
    long it was, and where in the exchange it struck.

    Args:
        setting: ``"total"``, ``"first_byte"`` or ``"idle"``.
        seconds: That setting's value (or, opening a stream, the nearer of the two).
        stream: Whether the request is a stream.
        chunks: For a stream already delivering chunks, how many came.
        partial: For a stream, the completion assembled so far.
    """
    url = request.url
    if chunks is not None:
        message = f"stream from {url} stalled (Timeout.{setting}) after {chunks} chunks"
    elif stream:
        message = f"no first chunk from {url} within {seconds:g} s (Timeout.{setting})"
    elif setting == "total":
        message = f"no complete answer from {url} within {seconds:g} s (Timeout.total)"
    elif setting == "first_byte":
        message = (
            f"no response from {request.method} {url} within {seconds:g} s (Timeout.first_byte)"
        )
    else:
        message = f"response body from {url} stalled for {seconds:g} s (Timeout.idle)"
    return APITimeoutError(message, request=request, partial=partial)


async def complete_once(
    sender: Sender,
    request: httpx.Request,
    timeout: Timeout,
    max_bytes: int,
    parse: Callable[[httpx.Response, Any], T],
) -> T:
    """One attempt at a JSON answer: send, read the whole body, classify, ``parse``.

    ``parse(response, data)`` turns the decoded JSON of a 2xx answer into the result;
    it runs inside the attempt, so an answer that cannot be read fails this attempt.
    """
    # One cancel scope for the whole attempt: its deadline is the nearer of the total
    # and first-byte deadlines until the headers arrive, then the nearer of the total
    # and idle deadlines, renewed at each read of the body.
    start = trio.current_time()
    total_at = math.inf if timeout.total is None else start + timeout.total
    first_byte_at = math.inf if timeout.first_byte is None else start + timeout.first_byte
    response: httpx.Response | None = None
    with trio.CancelScope(deadline=min(total_at, first_byte_at)) as scope:
        response = await send(sender, request)
        body = await read_body(response, timeout, max_bytes, scope, total_at)
    if scope.cancelled_caught:
        if trio.current_time() >= total_at:
            raise timeout_error(request, "total", timeout.total)
        if response is None:
            raise timeout_error(request, "first_byte", timeout.first_byte)
        raise timeout_error(request, "idle", timeout.idle)
    assert response is not None
    raise_for_status(response, body)
    data = parse_json(response, body)
    try:
        return parse(response, data)
    except APIResponseValidationError as error:
        error.request = request
        raise


async def open_stream_once(
    sender: Sender,
    request: httpx.Request,
    timeout: Timeout,
    max_bytes: int,
    until_first_event: Callable[[httpx.Response], Awaitable[None]],
) -> float:
    """One attempt at opening an event stream, up to its first event.

    Sends, checks the status and the content type, then awaits
    ``until_first_event(response)`` (the stream reads and decodes until it holds its
    first chunk), all under the first-byte deadline. Any failure up to there belongs to
    this attempt and may be retried: the caller has seen nothing yet.

    Returns:
        The deadline of the whole stream (``Timeout.total`` from now), for the reads
        that follow.
    """
    opened_at = trio.current_time()
    total_at = opened_at + (math.inf if timeout.total is None else timeout.total)
    first_byte = math.inf if timeout.first_byte is None else timeout.first_byte
    deadline = min(total_at, opened_at + first_byte)
    with trio.CancelScope(deadline=deadline) as scope:
        response = await send(sender, request)
        if not 200 <= response.status_code < 300:
            raise_for_status(response, await read_body(response, timeout, max_bytes))
        kind = response.headers.get("content-type", "")
        if not kind.startswith("text/event-stream"):
            body = await read_body(response, timeout, max_bytes)
            _raise_if_provider_error(response, body)
            raise APIResponseValidationError(
                f"invalid response: expected a stream (text/event-stream), got "
                f"{kind or 'no content type'}: {body[:200].decode('utf-8', 'replace')}",
                request=request,
            )
        await until_first_event(response)
    if scope.cancelled_caught:
        setting = "total" if deadline == total_at else "first_byte"
        raise timeout_error(request, setting, deadline - opened_at, stream=True)
    return total_at


def _raise_if_provider_error(response: httpx.Response, body: bytes) -> None:
    """A stream asked for and a JSON error body answered with a 200 (OpenRouter and
    llama.cpp do this when the model fails at once): the provider's error, with its code
    and the retry decision that goes with it, not a puzzling "expected a stream"."""
    from ._exceptions import ProviderError
    from ._models import provider_error_object

    try:
        data = json.loads(body)
    except ValueError:
        return
    if provider_error_object(data) is not None:
        raise ProviderError.from_body(data, request=response.request, response=response)


def parse_chat_completion(response: httpx.Response, data: Any) -> ChatCompletion:
    """The JSON of a 2xx chat answer as a :class:`ChatCompletion` (or the provider's
    error it carries, raised)."""
    return _completion_from_data()(response, data)


@functools.cache
def _completion_from_data() -> Callable[[httpx.Response, Any], ChatCompletion]:
    """:func:`trioclient._models.completion_from_data`, loaded with the first answer,
    not on import (an import statement in the function above would cost, on every
    answer, about a sixth of building the completion)."""
    from ._models import completion_from_data

    return completion_from_data


@functools.cache
def _body_stream() -> type[BodyStream]:
    """Our transport's stream class (see :func:`read_body`), imported when first
    needed: importing trioclient does not load the transport, nor h11."""
    from ._transport import BodyStream

    return BodyStream


async def read_stream_piece(
    body: Any,
    received: int,
    max_bytes: int,
    progress: Callable[[], str],
    expected_end: str,
    error: Callable[[type[APIError], str], APIError],
) -> bytes:
    """One network read of an open event stream, for every kind of stream.

    A clean end, a reset or a read that takes the stream past ``max_bytes`` is raised
    through ``error(kind, message)`` (the stream adds its ``.partial``): a stream that
    ended before ``expected_end`` is never a whole answer.

    Args:
        body: The response's byte iterator.
        received: Bytes read before this read.
        progress: Says what arrived so far ("3 chunks"), asked only on error.
        expected_end: What a whole stream ends with ("'data: [DONE]'").
    """
    try:
        data: bytes = await body.__anext__()
    except StopAsyncIteration:
        raise error(
            IncompleteStreamError,
            f"stream ended before {expected_end} (after {progress()}): the answer is "
            "incomplete",
        ) from None
    except APIError:
        raise
    except (httpx.HTTPError, OSError, trio.BrokenResourceError) as exc:
        kind = APITimeoutError if isinstance(exc, httpx.TimeoutException) else IncompleteStreamError
        raise error(
            kind,
            f"connection lost mid-stream after {progress()} ({exc or type(exc).__name__}): "
            "the answer is incomplete",
        ) from exc
    if received + len(data) > max_bytes:
        raise error(ResponseTooLargeError, f"stream exceeds max_response_bytes={max_bytes}")
    return data
