"""The fault matrix: every way an API fails, on real loopback sockets, and what we make of it.

Each row of :data:`MATRIX` is one fault of the embedded server, for a plain and for a
streamed request, with the exact outcome: the trioclient exception and what its message
says, and whether the client retries it. Each row runs twice:

* **once**: the first attempt is faulty, the next normal (``server.script_faults``). A
  retryable fault must then end in the same answer a clean request gets, after exactly
  two attempts; a fault that is not retryable is raised after one.
* **always**: every attempt is faulty. The error comes out after ``max_retries + 1``
  attempts (or one), counted both by the server and by ``client.statistics()``.

Every test ends with the leak checks: no limiter token borrowed, nothing in flight,
every connection closed on the server's side, the task tree back to its size before the
client opened. ``trio.fail_after`` bounds every test; ``filterwarnings = error`` turns a
``ResourceWarning`` from an unclosed socket into a failure.

What the embedded server cannot do (connection refused, silence after connect, a
response cut at a chosen byte, one byte per read, a 307, a captive portal's page)
comes from the fault proxy in ``_faultproxy.py``.

Tests that time something (the matrix, whose stall rows race a deadline against a
stall; the silent peer; the 429 waits) run on ``thread_safe_autojump_clock``: virtual
time stands still while the CPU works and leaps to the next deadline only when every
task has waited 20 ms of real time with nothing to do. On loopback a byte written is
readable at once, so a leap never happens while an answer is on its way, and a busy
machine cannot make a normal answer late. The rest run on the real clock with short
waits: the whole file runs in seconds.
"""

from __future__ import annotations

import re
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import attrs
import pytest
import trio
import trio.testing
from _fakes import chunk
from _faultproxy import (
    Blackhole,
    Forward,
    Respond,
    count_tasks,
    http_response,
    open_fault_proxy,
    wait_until_quiet,
)

import trioclient
from trioclient import (
    APIConnectionError,
    APIResponseValidationError,
    APIStatusError,
    APIStreamError,
    APITimeoutError,
    IncompleteStreamError,
    InternalServerError,
    ProviderError,
    RateLimitError,
    ResponseTooLargeError,
    RetryPolicy,
    Timeout,
)
from trioclient.testing import FAULT_KINDS, FaultParams, Server, open_server

KEY = "sk-faults-0123456789abcdef"
MODEL = "trioclient-sim"
MESSAGES = [{"role": "user", "content": "Name three rivers of Europe."}]
LIMIT = 10.0  # seconds any test may take; a hang fails instead of blocking the suite

PARAMS = FaultParams(
    stall_seconds=1.0,
    chunks_before_fault=3,
    trickle_bytes=256,
    trickle_interval=0.002,
    huge_bytes=200_000,
    rate_limited_retry_after=0.05,
)
RETRY = RetryPolicy(max_retries=2, base_delay=0.01, max_delay=0.02)
MAX_BYTES = 100_000
NORMAL = Timeout(total=5)
# Stall rows: deadlines well under the server's 1 s stall. On the real clock a busy
# machine sometimes made the retry's normal answer miss even a 0.5 s deadline (the row
# counted a third attempt); on the autojump clock a normal answer takes no virtual time.
STALL = Timeout(total=5, first_byte=0.5, idle=0.5)
# For a peer that never answers at all: nothing has to arrive in time.
QUICK = Timeout(total=5, first_byte=0.1, idle=0.1)

URL = r"http://127\.0\.0\.1:\d+/v1/chat/completions"
SERVER_ERROR = r"The server had an error while processing your request\. Sorry about that!"


@attrs.frozen
class Row:
    """One fault and what the client must make of it.

    Attributes:
        fault: The embedded server's fault kind.
        stream: Whether the request is streamed.
        error: The exact exception class, or None when the answer is fine despite it.
        match: A regex the exception's message must match.
        retried: Whether the client tries again.
        timeout: The client's deadlines for this row.
    """

    fault: str
    stream: bool
    error: type[Exception] | None
    match: str = ""
    retried: bool = False
    timeout: Timeout = NORMAL


def row(*args: Any, **kwargs: Any) -> Any:
    item = Row(*args, **kwargs)
    return pytest.param(item, id=f"{item.fault}-{'stream' if item.stream else 'plain'}")


# fmt: off
MATRIX = [
    # --- plain requests -------------------------------------------------------------------
    # fault                     stream  exception                   message                                                    retried
    row("http_500",              False, InternalServerError,        rf"^500 .*{SERVER_ERROR} \(request id req_\w+\)$",      retried=True),
    row("http_502",              False, InternalServerError,        r"^502 .*Bad gateway\.",                                   retried=True),
    row("http_503",              False, InternalServerError,        r"^503 .*The engine is currently overloaded",              retried=True),
    row("http_504",              False, InternalServerError,        r"^504 .*Gateway timeout\.",                               retried=True),
    row("html_error",            False, InternalServerError,        r"^502 .*\(text/html\) <html> <head><title>502 Bad Gateway", retried=True),
    row("rate_limited",          False, RateLimitError,             r"^429 .*Rate limit reached for requests",                 retried=True),
    row("reset_before_response", False, APIConnectionError,         rf"^connection error on POST {URL}: .*reset by peer",      retried=True),
    row("reset_mid_body",        False, APIConnectionError,         rf"^connection error on POST {URL}: .*body.*reset by peer", retried=True),
    row("reset_mid_stream",      False, APIConnectionError,         rf"^connection error on POST {URL}: .*body.*reset by peer", retried=True),
    row("truncated_stream",      False, APIConnectionError,         r"without sending complete message body \(received \d+ bytes, expected \d+\)", retried=True),
    row("malformed_json",        False, APIResponseValidationError, r"^invalid response: body is not JSON \(application/json, \d+ bytes\): \{\"id\""),
    row("malformed_chunk",       False, APIResponseValidationError, r"^invalid response: body is not JSON \(application/json, \d+ bytes\)"),
    row("error_event",           False, ProviderError,              rf"^the provider returned an error: {SERVER_ERROR} \(server_error\)$", retried=True),
    row("stall_before_first_byte", False, APITimeoutError,          rf"^no response from POST {URL} within 0\.5 s \(Timeout\.first_byte\)$", retried=True, timeout=STALL),
    row("stall_between_chunks",  False, APITimeoutError,            rf"^response body from {URL} stalled for 0\.5 s \(Timeout\.idle\)$", retried=True, timeout=STALL),
    row("slow_trickle",          False, None),
    row("huge_response",         False, ResponseTooLargeError,      rf"^response of \d+ bytes \(Content-Length\) exceeds max_response_bytes={MAX_BYTES}$"),
    row("wrong_content_type",    False, None),  # valid JSON under text/html: accepted
    row("handler_crash",         False, APIConnectionError,         r"server closed the connection without sending a complete response head", retried=True),
    # --- streamed requests: retried only before the first chunk ------------------------------
    row("http_500",              True,  InternalServerError,        rf"^500 .*{SERVER_ERROR}",                                 retried=True),
    row("http_502",              True,  InternalServerError,        r"^502 .*Bad gateway\.",                                   retried=True),
    row("http_503",              True,  InternalServerError,        r"^503 .*overloaded",                                      retried=True),
    row("http_504",              True,  InternalServerError,        r"^504 .*Gateway timeout\.",                               retried=True),
    row("html_error",            True,  InternalServerError,        r"^502 .*\(text/html\) <html>",                            retried=True),
    row("rate_limited",          True,  RateLimitError,             r"^429 .*Rate limit reached for requests",                 retried=True),
    row("reset_before_response", True,  APIConnectionError,         rf"^connection error on POST {URL}: .*reset by peer",      retried=True),
    row("reset_mid_body",        True,  IncompleteStreamError,      r"^connection lost mid-stream after {n} chunks \(.*reset by peer\): the answer is incomplete$"),
    row("reset_mid_stream",      True,  IncompleteStreamError,      r"^connection lost mid-stream after {n} chunks \(.*reset by peer\): the answer is incomplete$"),
    row("truncated_stream",      True,  IncompleteStreamError,      r"^stream ended before 'data: \[DONE\]' \(after {n} chunks\): the answer is incomplete$"),
    row("malformed_json",        True,  APIResponseValidationError, r"^invalid stream: chunk {n1} is not JSON: '\{\"id\""),
    row("malformed_chunk",       True,  APIResponseValidationError, r"^invalid stream: chunk {n1} is not JSON"),
    row("error_event",           True,  APIStreamError,             rf"^the server sent an error mid-stream: {SERVER_ERROR} \(server_error\)$"),
    row("stall_before_first_byte", True, APITimeoutError,           rf"^no first chunk from {URL} within 0\.5 s \(Timeout\.first_byte\)$", retried=True, timeout=STALL),
    row("stall_between_chunks",  True,  APITimeoutError,            rf"^stream from {URL} stalled \(Timeout\.idle\) after {{n}} chunks$", timeout=STALL),
    row("slow_trickle",          True,  None),
    row("huge_response",         True,  ResponseTooLargeError,      rf"^stream exceeds max_response_bytes={MAX_BYTES}$"),
    row("wrong_content_type",    True,  APIResponseValidationError, r"^invalid response: expected a stream \(text/event-stream\), got text/plain; charset=utf-8: data: "),
    row("handler_crash",         True,  APIConnectionError,         r"server closed the connection without sending a complete response head", retried=True),
]
# fmt: on


def test_the_matrix_covers_every_fault_of_the_server_both_ways() -> None:
    rows = [param.values[0] for param in MATRIX]
    assert sorted((r.fault, r.stream) for r in rows) == sorted(
        (fault, stream) for fault in FAULT_KINDS for stream in (False, True)
    )


@asynccontextmanager
async def client_for(
    base_url: str, timeout: Timeout = NORMAL, **kwargs: Any
) -> AsyncIterator[trioclient.Client]:
    kwargs.setdefault("retry", RETRY)
    kwargs.setdefault("max_response_bytes", MAX_BYTES)
    async with trioclient.Client(
        api_key=KEY, base_url=base_url, timeout=timeout, **kwargs
    ) as client:
        yield client
        # Whatever happened, nothing may stay borrowed or in flight.
        assert client.limiter.borrowed_tokens == 0
        assert client.statistics().in_flight == 0


async def ask(client: trioclient.Client, stream: bool, received: list[str] | None = None) -> str:
    """One request; a stream is read to its end, its chunks' text kept in ``received``."""
    if not stream:
        answer = await client.chat.completions.create(model=MODEL, messages=MESSAGES)
        assert answer.content is not None
        return answer.content
    received = [] if received is None else received
    async with client.chat.completions.stream(model=MODEL, messages=MESSAGES) as chunks:
        async for chunk in chunks:
            received.append(chunk.content)
        final = await chunks.get_final_completion()
    assert final.content == "".join(received)
    assert final.choices[0].finish_reason == "stop"
    return final.content


@attrs.frozen
class Counts:
    server: int
    sent: int
    retries: int
    succeeded: int
    failed: int


def counts(server: Server, client: trioclient.Client) -> Counts:
    s = client.statistics()
    return Counts(
        server.statistics().chat_requests,
        s.requests_sent,
        s.retries,
        s.requests_succeeded,
        s.requests_failed,
    )


def delta(after: Counts, before: Counts) -> Counts:
    return Counts(
        *(a - b for a, b in zip(attrs.astuple(after), attrs.astuple(before), strict=True))
    )


@pytest.mark.parametrize("plan", ["once", "always"])
@pytest.mark.parametrize("case", MATRIX)
async def test_fault(
    thread_safe_autojump_clock: trio.testing.MockClock, case: Row, plan: str
) -> None:
    with trio.fail_after(LIMIT):
        async with open_server(fault_params=PARAMS) as server:
            tasks_before = count_tasks()
            async with client_for(server.base_url) as client:
                reference = await ask(client, case.stream)  # a clean answer, to compare
            # A new client: no idle connection to reuse. (A reused connection that dies
            # before any response byte is retried once by the transport, unseen by the
            # client's counters: the server would count one request more.)
            async with client_for(server.base_url, case.timeout) as client:
                before = counts(server, client)
                if plan == "once":
                    server.script_faults([case.fault, None])
                else:
                    server.set_config(faults={case.fault: 1.0})
                received: list[str] = []
                if case.error is None or (plan == "once" and case.retried):
                    assert await ask(client, case.stream, received) == reference
                    attempts = 2 if case.error is not None else 1
                    outcome = Counts(attempts, attempts, attempts - 1, 1, 0)
                else:
                    with pytest.raises(case.error) as caught:
                        await ask(client, case.stream, received)
                    error = caught.value
                    assert type(error) is case.error
                    pattern = case.match.replace("{n}", str(len(received)))
                    pattern = pattern.replace("{n1}", str(len(received) + 1))
                    assert re.search(pattern, str(error)), str(error)
                    assert isinstance(error, trioclient.APIError) and error.request is not None
                    if received:
                        # A stream cut after chunks arrived: what arrived is in .partial,
                        # and it is a strict prefix of the whole answer, never passed off
                        # as the answer itself.
                        assert error.partial is not None
                        assert error.partial.content == "".join(received)
                        if case.fault != "huge_response":  # that answer is another
                            assert reference.startswith(error.partial.content)
                            assert error.partial.content != reference
                    attempts = RETRY.max_retries + 1 if case.retried else 1
                    outcome = Counts(attempts, attempts, attempts - 1, 0, 1)
                assert delta(counts(server, client), before) == outcome
            await wait_until_quiet(server, tasks=tasks_before)


async def test_a_200_carrying_an_error_object_says_what_the_server_said() -> None:
    with trio.fail_after(LIMIT):
        async with open_server(faults={"error_event": 1.0}) as server:
            async with client_for(server.base_url) as client:
                with pytest.raises(ProviderError, match=SERVER_ERROR):
                    await ask(client, stream=False)


# --- what only a socket can do ----------------------------------------------------------


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
async def test_connection_refused_is_retried_then_names_the_endpoint(stream: bool) -> None:
    port = closed_port()
    with trio.fail_after(LIMIT):
        async with client_for(f"http://127.0.0.1:{port}/v1") as client:
            with pytest.raises(APIConnectionError) as caught:
                await ask(client, stream)
            stats = client.statistics()
    assert type(caught.value) is APIConnectionError
    assert re.search(
        rf"^connection error on POST http://127\.0\.0\.1:{port}/v1/chat/completions: .*refused",
        str(caught.value),
    ), str(caught.value)
    assert (stats.requests_sent, stats.retries, stats.requests_failed) == (3, 2, 1)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
async def test_a_silent_peer_after_connect_is_a_first_byte_timeout(
    thread_safe_autojump_clock: trio.testing.MockClock, stream: bool
) -> None:
    with trio.fail_after(LIMIT):
        async with open_server() as server, open_fault_proxy(server.port, Blackhole()) as proxy:
            async with client_for(proxy.base_url, QUICK) as client:
                start = trio.current_time()
                with pytest.raises(APITimeoutError, match=r"0\.1 s \(Timeout\.first_byte\)"):
                    await ask(client, stream)
                elapsed = trio.current_time() - start
            await wait_until_quiet(proxy, server)
        stats = proxy.statistics()
    # Three attempts, each connected, each timed out waiting for the first byte.
    assert stats.connections_accepted == 3 and len(stats.request_times) == 3
    assert 0.3 <= elapsed < 1.0
    assert server.statistics().chat_requests == 0


@pytest.mark.parametrize(
    ("stream", "cut", "error", "match"),
    [
        (
            False,
            40,
            APIConnectionError,
            r"connection error on POST .*: server closed the connection",
        ),
        (
            False,
            300,
            APIConnectionError,
            r"peer closed connection without sending complete message body",
        ),
        (True, 2000, IncompleteStreamError, r"^connection lost mid-stream after \d+ chunks"),
    ],
    ids=["plain-in-head", "plain-in-body", "stream"],
)
async def test_a_response_cut_after_n_bytes(
    stream: bool, cut: int, error: type[Exception], match: str
) -> None:
    with trio.fail_after(LIMIT):
        async with open_server() as server, open_fault_proxy(server.port) as proxy:
            async with client_for(proxy.base_url) as client:
                reference = await ask(client, stream)
            proxy.default = Forward(close_after=cut)
            async with client_for(proxy.base_url, retry=RetryPolicy(max_retries=0)) as client:
                received: list[str] = []
                with pytest.raises(error, match=match) as caught:
                    await ask(client, stream, received)
            await wait_until_quiet(proxy, server)
    assert type(caught.value) is error
    assert proxy.statistics().bytes_down >= cut
    if stream:
        assert received and caught.value.partial.content == "".join(received)  # type: ignore[attr-defined]
        assert reference.startswith("".join(received)) and "".join(received) != reference


async def test_a_reset_mid_stream_through_the_proxy() -> None:
    with trio.fail_after(LIMIT):
        async with (
            open_server() as server,
            open_fault_proxy(server.port, Forward(reset_after=1500)) as proxy,
        ):
            async with client_for(proxy.base_url) as client:
                with pytest.raises(IncompleteStreamError, match="reset by peer"):
                    await ask(client, stream=True)
                assert client.statistics().requests_sent == 1
            await wait_until_quiet(proxy, server)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
async def test_one_byte_per_read_gives_the_same_answer(stream: bool) -> None:
    with trio.fail_after(LIMIT):
        async with open_server(answer_tokens=12) as server:
            async with open_fault_proxy(server.port) as proxy:
                async with client_for(proxy.base_url) as client:
                    whole: list[str] = []
                    reference = await ask(client, stream, whole)
                await wait_until_quiet(proxy)
                unsliced_bytes = proxy.statistics().bytes_down
                proxy.default = Forward(slice_bytes=1)
                async with client_for(proxy.base_url) as client:
                    sliced: list[str] = []
                    assert await ask(client, stream, sliced) == reference
                await wait_until_quiet(proxy, server)
    assert sliced == whole  # the same chunks, not merely the same text
    assert proxy.statistics().bytes_down > unsliced_bytes


async def test_latency_on_every_piece_is_only_slower() -> None:
    with trio.fail_after(LIMIT):
        async with (
            open_server(answer_tokens=8) as server,
            open_fault_proxy(server.port, Forward(latency=0.01)) as proxy,
        ):
            async with client_for(proxy.base_url) as client:
                start = trio.current_time()
                await ask(client, stream=True)
                assert trio.current_time() - start >= 0.02  # one piece each way at least
            await wait_until_quiet(proxy, server)


# --- rate limits: the server's word on when to come back ---------------------------------


def too_many(headers: list[tuple[str, str]], code: str = "rate_limit_exceeded") -> bytes:
    body = (
        b'{"error":{"message":"Rate limit reached for requests","type":"requests","code":"'
        + code.encode()
        + b'"}}'
    )
    return http_response(429, body, [("content-type", "application/json"), *headers])


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize(
    ("headers", "low", "high"),
    [
        ([("retry-after-ms", "300")], 0.3, 0.6),
        ([("retry-after", "1")], 1.0, 1.3),
        ([("retry-after-ms", "200"), ("retry-after", "5")], 0.2, 0.5),  # ms wins
        ([], 0.0, 0.5),  # no word from the server: jittered backoff under base_delay
    ],
    ids=["retry-after-ms", "retry-after", "both", "neither"],
)
async def test_429_waits_as_the_server_says_then_succeeds(
    thread_safe_autojump_clock: trio.testing.MockClock,
    stream: bool,
    headers: list[tuple[str, str]],
    low: float,
    high: float,
) -> None:
    # On fast_clock (virtual time at 20x real time) a loaded machine turned the work
    # around the wait into virtual seconds past `high`; autojump time stands still then.
    retry = RetryPolicy(max_retries=2, base_delay=0.4)
    with trio.fail_after(60):
        async with open_server() as server, open_fault_proxy(server.port) as proxy:
            async with client_for(proxy.base_url) as client:
                reference = await ask(client, stream)
            async with client_for(proxy.base_url, retry=retry) as client:
                proxy.script([Respond(too_many(headers))])
                assert await ask(client, stream) == reference
                stats = client.statistics()
                # The retry starts on a new connection when the wait is over.
                (asked_at,) = proxy.statistics().request_times
                assert (stats.rate_limited, stats.retries) == (1, 1)
                waited = trio.current_time() - asked_at
            await wait_until_quiet(proxy, server)
    assert low <= waited < high + 0.5, waited


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
async def test_insufficient_quota_is_final_at_once(stream: bool) -> None:
    with trio.fail_after(LIMIT):
        async with open_server(insufficient_quota=True) as server:
            async with client_for(server.base_url) as client:
                with pytest.raises(RateLimitError) as caught:
                    await ask(client, stream)
                assert client.statistics().requests_sent == 1
            await wait_until_quiet(server)
    assert caught.value.code == "insufficient_quota"
    assert str(caught.value).startswith("429 ")
    assert "You exceeded your current quota" in str(caught.value)
    assert server.statistics().chat_requests == 1


# --- pages no API would send ---------------------------------------------------------------

PORTAL = (
    b"<!DOCTYPE html><html><head><title>Sign in to Hotel Wi-Fi</title></head>"
    b"<body><form>...</form></body></html>"
)


@pytest.mark.parametrize(
    ("stream", "match"),
    [
        (False, r"^invalid response: body is not JSON \(text/html, \d+ bytes\): <!DOCTYPE html>"),
        (
            True,
            r"^invalid response: expected a stream \(text/event-stream\), got text/html: <!DOCTYPE",
        ),
    ],
    ids=["plain", "stream"],
)
async def test_a_captive_portal_page_with_200_is_named_not_parsed(stream: bool, match: str) -> None:
    page = http_response(200, PORTAL, [("content-type", "text/html")])
    with trio.fail_after(LIMIT):
        async with open_server() as server, open_fault_proxy(server.port, Respond(page)) as proxy:
            async with client_for(proxy.base_url) as client:
                with pytest.raises(APIResponseValidationError, match=match):
                    await ask(client, stream)
                assert client.statistics().requests_sent == 1  # the answer is the bug
            await wait_until_quiet(proxy, server)


def chunked(status: int, content_type: str, payload: bytes, piece: int = 16384) -> bytes:
    """A response with no Content-Length: the size is known only by reading it."""
    head = f"HTTP/1.1 {status} OK\r\ncontent-type: {content_type}\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    body = b"".join(
        b"%x\r\n" % len(payload[i : i + piece]) + payload[i : i + piece] + b"\r\n"
        for i in range(0, len(payload), piece)
    )
    return head.encode() + body + b"0\r\n\r\n"


async def test_an_unannounced_huge_body_is_cut_off_at_the_bound() -> None:
    payload = (
        b'{"choices":[{"index":0,"message":{"role":"assistant","content":"'
        + b"x" * 400_000
        + b'"}}]}'
    )
    with trio.fail_after(LIMIT):
        async with (
            open_server() as server,
            open_fault_proxy(
                server.port, Respond(chunked(200, "application/json", payload))
            ) as proxy,
        ):
            async with client_for(proxy.base_url) as client:
                with pytest.raises(
                    ResponseTooLargeError,
                    match=rf"^response body exceeds max_response_bytes={MAX_BYTES}$",
                ):
                    await ask(client, stream=False)
                assert client.statistics().requests_sent == 1
            await wait_until_quiet(proxy, server)


async def test_one_endless_event_is_refused_at_the_bound() -> None:
    # A stream that never ends its first event: bounded by max_response_bytes too.
    payload = b"data: " + b"y" * 300_000
    with trio.fail_after(LIMIT):
        async with (
            open_server() as server,
            open_fault_proxy(
                server.port, Respond(chunked(200, "text/event-stream", payload))
            ) as proxy,
        ):
            async with client_for(proxy.base_url) as client:
                with pytest.raises(trioclient.APIError) as caught:
                    await ask(client, stream=True)
            await wait_until_quiet(proxy, server)
    assert str(MAX_BYTES) in str(caught.value), repr(caught.value)


async def test_a_redirect_is_an_error_naming_the_location_and_not_followed() -> None:
    async with open_server() as elsewhere:
        location = f"{elsewhere.base_url}/chat/completions"
        moved = http_response(307, b"", [("location", location)], "Temporary Redirect")
        with trio.fail_after(LIMIT):
            async with (
                open_server() as server,
                open_fault_proxy(server.port, Respond(moved)) as proxy,
            ):
                for stream in (False, True):
                    async with client_for(proxy.base_url) as client:
                        with pytest.raises(APIStatusError) as caught:
                            await ask(client, stream)
                        assert client.statistics().requests_sent == 1
                    assert caught.value.status_code == 307
                    assert location in str(caught.value)
                    assert "redirects are not followed" in str(caught.value)
                await wait_until_quiet(proxy, server)
    assert elsewhere.statistics().requests_total == 0


@pytest.mark.parametrize(
    ("bad", "error", "match"),
    [
        (
            b"data: {not json\n\n",
            APIResponseValidationError,
            r"^invalid stream: chunk 3 is not JSON",
        ),
        (
            b'data: {"error": {"message": "model overloaded"}}\n\n',
            APIStreamError,
            r"^the server sent an error mid-stream: model overloaded$",
        ),
    ],
    ids=["malformed", "error-event"],
)
async def test_chunks_read_with_a_broken_event_are_yielded_before_the_error(
    bad: bytes, error: type[Exception], match: str
) -> None:
    # One write, so one read: two good chunks, then the bad event.
    body = chunk("Hel") + chunk("lo") + bad
    page = http_response(200, body, [("content-type", "text/event-stream")])
    with trio.fail_after(LIMIT):
        async with open_server() as server, open_fault_proxy(server.port, Respond(page)) as proxy:
            async with client_for(proxy.base_url) as client:
                received: list[str] = []
                with pytest.raises(error, match=match) as caught:
                    await ask(client, True, received)
            await wait_until_quiet(proxy, server)
    assert proxy.statistics().connections_accepted == 1  # chunks arrived: never retried
    assert received == ["Hel", "lo"]
    assert caught.value.partial.content == "Hello"  # type: ignore[attr-defined]
