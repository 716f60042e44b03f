"""Every fault kind, checked at the socket: the exact bytes and how the connection ends.

Each test sends one raw HTTP/1.1 request (with `connection: close`, so a healthy
response ends in a clean EOF), reads until EOF or reset, and parses the bytes with
a client-side h11 connection. Faults are chosen per request with the
`x-trioclient-sim` header, except where scripting or probabilities are the subject.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import attrs
import h11
import pytest
import trio

from trioclient.testing import FAULT_KINDS, FaultParams, Server, open_server
from trioclient.testing._answers import count_tokens

BODY = {"model": "m", "messages": [{"role": "user", "content": "Faults at the socket level"}]}


@attrs.frozen
class Raw:
    """What came back: the parsed response (as far as it went) and how the socket ended."""

    status: int | None
    headers: dict[bytes, bytes]
    body: bytes
    complete: bool  # h11 saw the whole message
    ending: str  # "eof" or "reset"
    elapsed: float


def request_bytes(
    body: Any, *, fault: str | None = None, stream: bool = False, sim: Any = None
) -> bytes:
    payload = json.dumps({**body, "stream": True} if stream else body).encode()
    headers = [
        (b"host", b"127.0.0.1"),
        (b"authorization", b"Bearer sk-raw"),
        (b"content-type", b"application/json"),
        (b"content-length", b"%d" % len(payload)),
        (b"connection", b"close"),
    ]
    if fault is not None:
        sim = {"fault": fault}
    if sim is not None:
        headers.append((b"x-trioclient-sim", json.dumps(sim).encode()))
    conn = h11.Connection(h11.CLIENT)
    head = conn.send(h11.Request(method="POST", target="/v1/chat/completions", headers=headers))
    data = conn.send(h11.Data(data=payload))
    assert head is not None and data is not None
    return head + data


async def exchange(server: Server, data: bytes) -> Raw:
    start = trio.current_time()
    stream = await trio.open_tcp_stream("127.0.0.1", server.port)
    received = bytearray()
    ending = "eof"
    async with stream:
        await stream.send_all(data)
        try:
            while chunk := await stream.receive_some(65536):
                received += chunk
        except trio.BrokenResourceError:
            ending = "reset"
    elapsed = trio.current_time() - start
    return parse(bytes(received), ending, elapsed)


def parse(received: bytes, ending: str, elapsed: float) -> Raw:
    conn = h11.Connection(h11.CLIENT)
    conn.send(
        h11.Request(method="POST", target="/", headers=[(b"host", b"x"), (b"content-length", b"0")])
    )
    conn.send(h11.EndOfMessage())
    conn.receive_data(received)
    conn.receive_data(b"")
    status: int | None = None
    headers: dict[bytes, bytes] = {}
    body = bytearray()
    complete = False
    try:
        while True:
            event = conn.next_event()
            if isinstance(event, h11.Response):
                status = event.status_code
                headers = dict(event.headers)
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                complete = True
                break
            else:
                break
    except h11.RemoteProtocolError:
        complete = False
    return Raw(status, headers, bytes(body), complete, ending, elapsed)


def sse_payloads(body: bytes) -> list[bytes]:
    return [event[len(b"data: ") :] for event in body.split(b"\n\n") if event]


async def faulted(fault: str | None, *, stream: bool = False, **config: Any) -> tuple[Raw, Server]:
    with trio.fail_after(15):
        async with open_server(**config) as server:
            raw = await exchange(server, request_bytes(BODY, fault=fault, stream=stream))
            # the server must still serve a healthy request afterwards
            healthy = await exchange(server, request_bytes(BODY))
            assert healthy.status == 200 and healthy.complete, fault
    return raw, server


async def test_baseline_is_a_complete_response_with_clean_eof() -> None:
    raw, _ = await faulted(None)
    assert raw.status == 200 and raw.complete and raw.ending == "eof"
    raw, _ = await faulted(None, stream=True)
    assert raw.complete and sse_payloads(raw.body)[-1] == b"[DONE]"


@pytest.mark.parametrize("status", [500, 502, 503, 504])
@pytest.mark.parametrize("stream", [False, True])
async def test_http_error_faults_send_openai_error_bodies(status: int, stream: bool) -> None:
    raw, server = await faulted(f"http_{status}", stream=stream)
    assert raw.status == status and raw.complete
    assert raw.headers[b"content-type"] == b"application/json"
    error = json.loads(raw.body)["error"]
    assert error["type"] == "server_error" and error["message"]
    assert server.statistics().faults_injected == {f"http_{status}": 1}
    assert server.statistics().responses_by_status == {status: 1, 200: 1}


async def test_html_error_is_a_502_html_page() -> None:
    raw, _ = await faulted("html_error")
    assert raw.status == 502 and raw.complete
    assert raw.headers[b"content-type"] == b"text/html"
    assert raw.body.startswith(b"<html>") and b"502 Bad Gateway" in raw.body


async def test_rate_limited_fault_is_a_429_with_retry_after_ms() -> None:
    params = FaultParams(rate_limited_retry_after=1.25)
    raw, server = await faulted("rate_limited", fault_params=params)
    assert raw.status == 429
    assert raw.headers[b"retry-after-ms"] == b"1250"
    assert raw.headers[b"retry-after"] == b"2"
    assert json.loads(raw.body)["error"]["code"] == "rate_limit_exceeded"
    assert server.statistics().rate_limited == 1


@pytest.mark.parametrize("stream", [False, True])
async def test_reset_before_response_sends_nothing_and_resets(stream: bool) -> None:
    raw, _ = await faulted("reset_before_response", stream=stream)
    assert raw.ending == "reset"
    assert raw.status is None and raw.body == b""


async def test_reset_mid_body_sends_headers_and_part_of_the_body_then_resets() -> None:
    raw, _ = await faulted("reset_mid_body")
    assert raw.ending == "reset"
    assert raw.status == 200 and not raw.complete
    expected = int(raw.headers[b"content-length"])
    assert 0 < len(raw.body) < expected


async def test_reset_mid_stream_sends_some_chunks_then_resets() -> None:
    raw, _ = await faulted(
        "reset_mid_stream", stream=True, fault_params=FaultParams(chunks_before_fault=3)
    )
    assert raw.ending == "reset"
    assert raw.status == 200 and not raw.complete
    payloads = sse_payloads(raw.body)
    # steps 0-2: role + first token, then tokens 2 and 3 — all valid JSON, no [DONE]
    assert len(payloads) == 4
    assert all(json.loads(p)["object"] == "chat.completion.chunk" for p in payloads)


async def test_truncated_stream_ends_cleanly_without_done() -> None:
    raw, _ = await faulted("truncated_stream", stream=True)
    assert raw.ending == "eof"
    assert raw.status == 200 and raw.complete  # the chunked body is well-formed
    payloads = sse_payloads(raw.body)
    assert payloads and b"[DONE]" not in payloads
    assert all(json.loads(p)["choices"][0]["finish_reason"] is None for p in payloads)


async def test_truncated_non_stream_closes_short_of_content_length() -> None:
    raw, _ = await faulted("truncated_stream")
    assert raw.ending == "eof" and raw.status == 200 and not raw.complete
    assert len(raw.body) < int(raw.headers[b"content-length"])


async def test_malformed_json_body_is_not_json_but_framed_correctly() -> None:
    raw, _ = await faulted("malformed_json")
    assert raw.status == 200 and raw.complete
    assert raw.headers[b"content-type"] == b"application/json"
    with pytest.raises(ValueError):
        json.loads(raw.body)


async def test_malformed_chunk_breaks_exactly_one_event() -> None:
    raw, _ = await faulted("malformed_chunk", stream=True)
    assert raw.status == 200 and raw.complete
    payloads = sse_payloads(raw.body)
    assert payloads[-1] == b"[DONE]"
    broken = 0
    for payload in payloads[:-1]:
        try:
            json.loads(payload)
        except ValueError:
            broken += 1
    assert broken == 1


async def test_error_event_mid_stream_then_end() -> None:
    raw, _ = await faulted("error_event", stream=True)
    assert raw.status == 200 and raw.complete
    payloads = sse_payloads(raw.body)
    last = json.loads(payloads[-1])
    assert last["error"]["type"] == "server_error"
    assert all("choices" in json.loads(p) for p in payloads[:-1])
    assert len(payloads) > 1


async def test_error_event_on_non_stream_is_a_200_with_an_error_object() -> None:
    raw, _ = await faulted("error_event")
    assert raw.status == 200 and raw.complete
    assert json.loads(raw.body)["error"]["type"] == "server_error"


@pytest.mark.parametrize("stream", [False, True])
async def test_stall_before_first_byte(stream: bool) -> None:
    raw, _ = await faulted(
        "stall_before_first_byte", stream=stream, fault_params=FaultParams(stall_seconds=0.4)
    )
    assert raw.status == 200 and raw.complete
    assert raw.elapsed >= 0.38


async def test_stall_between_chunks_stalls_after_some_chunks() -> None:
    params = FaultParams(stall_seconds=0.5, chunks_before_fault=2)
    with trio.fail_after(15):
        async with open_server(fault_params=params) as server:
            stream = await trio.open_tcp_stream("127.0.0.1", server.port)
            async with stream:
                await stream.send_all(
                    request_bytes(BODY, fault="stall_between_chunks", stream=True)
                )
                start = trio.current_time()
                arrivals: list[tuple[float, bytes]] = []
                while chunk := await stream.receive_some(65536):
                    arrivals.append((trio.current_time() - start, chunk))
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(arrivals)]
    assert max(gaps) >= 0.45
    before_stall = b"".join(c for t, c in arrivals if t < 0.3)
    assert before_stall.count(b"data: ") == 3  # role + tokens 0 and 1
    assert b"".join(c for _, c in arrivals).endswith(b"data: [DONE]\n\n\r\n0\r\n\r\n")


async def test_stall_between_chunks_on_non_stream_stalls_mid_body() -> None:
    raw, _ = await faulted("stall_between_chunks", fault_params=FaultParams(stall_seconds=0.3))
    assert raw.complete and raw.elapsed >= 0.28
    json.loads(raw.body)


@pytest.mark.parametrize("stream", [False, True])
async def test_slow_trickle_sends_the_body_a_few_bytes_at_a_time(stream: bool) -> None:
    params = FaultParams(trickle_bytes=50, trickle_interval=0.002)
    with trio.fail_after(15):
        async with open_server(fault_params=params) as server:
            tcp = await trio.open_tcp_stream("127.0.0.1", server.port)
            async with tcp:
                await tcp.send_all(request_bytes(BODY, fault="slow_trickle", stream=stream))
                reads = []
                while chunk := await tcp.receive_some(65536):
                    reads.append(chunk)
    raw = parse(b"".join(reads), "eof", 0)
    assert raw.complete and raw.status == 200
    assert len(reads) >= len(raw.body) // 50 // 2  # many small reads, not one or two


@pytest.mark.parametrize("stream", [False, True])
async def test_huge_response_is_far_larger_and_still_consistent(stream: bool) -> None:
    size = 300_000
    raw, _ = await faulted(
        "huge_response", stream=stream, fault_params=FaultParams(huge_bytes=size)
    )
    assert raw.complete and len(raw.body) >= size
    if stream:
        chunks = [json.loads(p) for p in sse_payloads(raw.body)[:-1]]
        text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    else:
        data = json.loads(raw.body)
        text = data["choices"][0]["message"]["content"]
        assert data["usage"]["completion_tokens"] == count_tokens(text)
    assert len(text) >= size


@pytest.mark.parametrize("stream", [False, True])
async def test_wrong_content_type(stream: bool) -> None:
    raw, _ = await faulted("wrong_content_type", stream=stream)
    assert raw.status == 200 and raw.complete
    content_type = raw.headers[b"content-type"]
    assert content_type.startswith(b"text/plain" if stream else b"text/html")
    if not stream:
        json.loads(raw.body)  # the body is fine; only the label is wrong


def test_every_fault_kind_is_covered_by_a_test_here() -> None:
    source = Path(__file__).read_text()
    # http_5xx kinds are covered by the parametrized test; handler_crash by test_server_basic
    skip = {"http_500", "http_502", "http_503", "http_504", "handler_crash"}
    missing = [kind for kind in FAULT_KINDS if kind not in skip and f'"{kind}"' not in source]
    assert not missing


async def test_scripted_faults_apply_in_order_then_normal() -> None:
    with trio.fail_after(15):
        async with open_server() as server:
            server.script_faults([None, "http_503", "http_500"])
            statuses = [(await exchange(server, request_bytes(BODY))).status for _ in range(4)]
            assert statuses == [200, 503, 500, 200]
            assert server.statistics().faults_injected == {"http_503": 1, "http_500": 1}
            with pytest.raises(ValueError, match="unknown fault"):
                server.script_faults(["http_999"])


async def test_sim_header_fault_null_bypasses_without_consuming_the_script() -> None:
    with trio.fail_after(15):
        async with open_server() as server:
            server.script_faults(["http_500"])
            raw = await exchange(server, request_bytes(BODY, sim={"fault": None}))
            assert raw.status == 200
            raw = await exchange(server, request_bytes(BODY))
            assert raw.status == 500


async def test_fault_probabilities_are_honoured_and_seeded() -> None:
    async def run(seed: int) -> list[int | None]:
        async with open_server(faults={"http_503": 0.3, "http_500": 0.2}, seed=seed) as server:
            return [(await exchange(server, request_bytes(BODY))).status for _ in range(200)]

    with trio.fail_after(30):
        first = await run(1)
        again = await run(1)
    assert first == again  # the same seed rolls the same dice
    assert 30 <= first.count(503) <= 90
    assert 15 <= first.count(500) <= 70
    assert first.count(200) + first.count(503) + first.count(500) == 200
