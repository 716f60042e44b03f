"""The embedded server's HTTP surface: shapes, determinism, validation, keep-alive.

These tests use real loopback sockets, so they run on trio's real clock and bound
every wait with `trio.fail_after`.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import trio

from trioclient.testing import SIM_HEADER, ServerConfig, open_server
from trioclient.testing._answers import count_tokens

AUTH = {"authorization": "Bearer sk-anything"}
MESSAGES = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Explain trio nurseries and structured concurrency"},
]


def chat_body(**extra: Any) -> dict[str, Any]:
    return {"model": "test-model", "messages": MESSAGES, **extra}


def parse_sse(text: str) -> list[str]:
    """Split an SSE body into its data payloads (a deliberately independent reading)."""
    assert text.endswith("\n\n"), "an SSE body ends with a blank line"
    payloads = []
    for event in text.split("\n\n")[:-1]:
        lines = event.split("\n")
        assert all(line.startswith("data: ") for line in lines), event
        payloads.append("\n".join(line[len("data: ") :] for line in lines))
    return payloads


async def post(client: httpx.AsyncClient, url: str, body: Any, **kw: Any) -> httpx.Response:
    headers = {**AUTH, **kw.pop("headers", {})}
    if isinstance(body, bytes):
        return await client.post(url, content=body, headers=headers, **kw)
    return await client.post(url, json=body, headers=headers, **kw)


async def test_binds_an_ephemeral_loopback_port_and_serves_health() -> None:
    with trio.fail_after(10):
        async with open_server() as server, httpx.AsyncClient() as client:
            assert server.port > 0
            assert server.base_url == f"http://127.0.0.1:{server.port}/v1"
            response = await client.get(f"http://127.0.0.1:{server.port}/health")
            assert response.status_code == 200
            assert response.json() == {"status": "ok"}
            assert response.headers["x-request-id"].startswith("req_")


async def test_non_streaming_completion_has_openai_shape_and_consistent_usage() -> None:
    with trio.fail_after(10):
        async with open_server() as server, httpx.AsyncClient() as client:
            response = await post(client, server.base_url + "/chat/completions", chat_body())
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-request-id"].startswith("req_")
    data = response.json()
    assert data["id"].startswith("chatcmpl-")
    assert data["object"] == "chat.completion"
    assert isinstance(data["created"], int)
    assert data["model"] == "test-model"
    assert data["system_fingerprint"] == "fp_trioclient"
    [choice] = data["choices"]
    assert choice["index"] == 0
    assert choice["logprobs"] is None
    assert choice["finish_reason"] == "stop"
    message = choice["message"]
    assert message["role"] == "assistant"
    assert message["refusal"] is None
    content = message["content"]
    assert content.strip()
    usage = data["usage"]
    assert usage["completion_tokens"] == count_tokens(content)
    assert 20 <= usage["completion_tokens"] <= 40
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    # prompt tokens: every message's text plus a per-message overhead
    text_tokens = sum(count_tokens(m["content"]) for m in MESSAGES)
    assert usage["prompt_tokens"] > text_tokens
    # a readable answer talks about what was asked
    assert any(word in content for word in ("nurseries", "trio", "structured", "concurrency"))


async def test_answers_are_deterministic_per_prompt_seed_and_choice() -> None:
    async def content(client: httpx.AsyncClient, url: str, **extra: Any) -> list[str]:
        response = await post(client, url, chat_body(**extra))
        return [c["message"]["content"] for c in response.json()["choices"]]

    with trio.fail_after(10):
        async with open_server() as one, open_server() as two, httpx.AsyncClient() as client:
            url_one = one.base_url + "/chat/completions"
            url_two = two.base_url + "/chat/completions"
            first = await content(client, url_one, seed=7, n=3)
            assert first == await content(client, url_one, seed=7, n=3)
            assert first == await content(client, url_two, seed=7, n=3)  # another server
            assert len(set(first)) == 3  # choices differ from each other
            seeds = {tuple(await content(client, url_one, seed=s)) for s in range(5)}
            assert len(seeds) > 1


async def test_streaming_sends_role_then_one_chunk_per_token_then_finish_usage_done() -> None:
    with trio.fail_after(10):
        async with open_server() as server, httpx.AsyncClient() as client:
            url = server.base_url + "/chat/completions"
            plain = (await post(client, url, chat_body(seed=3))).json()
            body = chat_body(seed=3, stream=True, stream_options={"include_usage": True})
            response = await post(client, url, body)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["transfer-encoding"] == "chunked"
    payloads = parse_sse(response.text)
    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(p) for p in payloads[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"] == {
        "role": "assistant",
        "content": "",
        "refusal": None,
    }
    *with_choices, usage_chunk = chunks
    assert usage_chunk["choices"] == []
    assert all(c["usage"] is None for c in with_choices)
    finish = with_choices[-1]["choices"][0]
    assert finish["delta"] == {} and finish["finish_reason"] == "stop"
    contents = [c["choices"][0]["delta"]["content"] for c in with_choices[1:-1]]
    assert "".join(contents) == plain["choices"][0]["message"]["content"]
    assert usage_chunk["usage"] == plain["usage"]
    assert usage_chunk["usage"]["completion_tokens"] == len(contents)


async def test_streaming_without_include_usage_has_no_usage_fields() -> None:
    with trio.fail_after(10):
        async with open_server() as server, httpx.AsyncClient() as client:
            response = await post(
                client, server.base_url + "/chat/completions", chat_body(stream=True)
            )
    chunks = [json.loads(p) for p in parse_sse(response.text)[:-1]]
    assert all("usage" not in c and c["choices"] for c in chunks)


async def test_n_choices_stream_interleaved_with_their_own_index() -> None:
    with trio.fail_after(10):
        async with open_server() as server, httpx.AsyncClient() as client:
            url = server.base_url + "/chat/completions"
            plain = (await post(client, url, chat_body(n=2))).json()
            streamed = await post(client, url, chat_body(n=2, stream=True))
    texts: dict[int, str] = {0: "", 1: ""}
    finishes = {}
    indexes_in_order = []
    for payload in parse_sse(streamed.text)[:-1]:
        [choice] = json.loads(payload)["choices"]
        indexes_in_order.append(choice["index"])
        texts[choice["index"]] += choice["delta"].get("content", "")
        if choice["finish_reason"]:
            finishes[choice["index"]] = choice["finish_reason"]
    assert [c["message"]["content"] for c in plain["choices"]] == [texts[0], texts[1]]
    assert finishes == {0: "stop", 1: "stop"}
    # interleaved, not one choice after the other
    assert indexes_in_order[:4] == [0, 0, 1, 1]
    assert 0 in indexes_in_order[len(indexes_in_order) // 2 :]


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
async def test_max_tokens_cuts_the_answer_and_reports_length(field: str) -> None:
    with trio.fail_after(10):
        async with open_server() as server, httpx.AsyncClient() as client:
            url = server.base_url + "/chat/completions"
            full = (await post(client, url, chat_body())).json()
            cut = (await post(client, url, chat_body(**{field: 5}))).json()
            roomy = (await post(client, url, chat_body(**{field: 1000}))).json()
    full_text = full["choices"][0]["message"]["content"]
    cut_text = cut["choices"][0]["message"]["content"]
    assert cut["choices"][0]["finish_reason"] == "length"
    assert cut["usage"]["completion_tokens"] == 5 == count_tokens(cut_text)
    assert full_text.startswith(cut_text)
    assert roomy["choices"][0]["finish_reason"] == "stop"
    assert roomy["choices"][0]["message"]["content"] == full_text


async def test_answer_length_is_configurable_per_server_and_per_request() -> None:
    with trio.fail_after(10):
        async with open_server(answer_tokens=7) as server, httpx.AsyncClient() as client:
            url = server.base_url + "/chat/completions"
            short = (await post(client, url, chat_body())).json()
            sim = {SIM_HEADER.decode(): json.dumps({"answer_tokens": 3})}
            shorter = (await post(client, url, chat_body(), headers=sim)).json()
    assert short["usage"]["completion_tokens"] == 7
    assert shorter["usage"]["completion_tokens"] == 3
    assert short["choices"][0]["finish_reason"] == shorter["choices"][0]["finish_reason"] == "stop"


async def test_models_list_and_model_lookup() -> None:
    with trio.fail_after(10):
        async with open_server(models=("alpha", "beta")) as server, httpx.AsyncClient() as client:
            listing = await client.get(server.base_url + "/models", headers=AUTH)
            one = await client.get(server.base_url + "/models/beta", headers=AUTH)
            missing = await client.get(server.base_url + "/models/gamma", headers=AUTH)
            no_auth = await client.get(server.base_url + "/models")
    assert listing.json()["object"] == "list"
    assert [m["id"] for m in listing.json()["data"]] == ["alpha", "beta"]
    assert all(m["object"] == "model" for m in listing.json()["data"])
    assert one.json()["id"] == "beta"
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "model_not_found"
    assert no_auth.status_code == 401


async def test_missing_authorization_is_401_even_when_any_key_is_accepted() -> None:
    with trio.fail_after(10):
        async with open_server() as server, httpx.AsyncClient() as client:
            url = server.base_url + "/chat/completions"
            response = await client.post(url, json=chat_body())
            other = await post(client, url, chat_body(), headers={"authorization": "Bearer x"})
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert "API key" in error["message"]
    assert other.status_code == 200


async def test_wrong_key_is_401_invalid_api_key_and_never_echoed() -> None:
    secret = "sk-live-0123456789abcdefSECRET"
    wrong = "sk-wrong-9876543210zyxwvuWRONG"
    with trio.fail_after(10):
        async with open_server(api_key=secret) as server, httpx.AsyncClient() as client:
            url = server.base_url + "/chat/completions"
            bad = await post(client, url, chat_body(), headers={"authorization": f"Bearer {wrong}"})
            good = await post(
                client, url, chat_body(), headers={"authorization": f"Bearer {secret}"}
            )
            assert secret not in repr(server) and secret not in repr(server.config)
    assert bad.status_code == 401
    error = bad.json()["error"]
    assert error["code"] == "invalid_api_key"
    assert error["type"] == "invalid_request_error"
    assert wrong not in bad.text and secret not in bad.text
    assert "Incorrect API key provided" in error["message"]
    assert good.status_code == 200


BAD_BODIES = [
    (b"{not json", None, None),
    (b"[1, 2]", None, "invalid_type"),
    ({"messages": MESSAGES}, None, None),
    ({"model": 3, "messages": MESSAGES}, "model", "invalid_type"),
    ({"model": "m"}, "messages", "missing_required_parameter"),
    ({"model": "m", "messages": "hi"}, "messages", "invalid_type"),
    ({"model": "m", "messages": []}, "messages", "empty_array"),
    ({"model": "m", "messages": ["hi"]}, "messages[0]", "invalid_type"),
    (
        {"model": "m", "messages": [{"content": "hi"}]},
        "messages[0].role",
        "missing_required_parameter",
    ),
    (
        {"model": "m", "messages": [{"role": "robot", "content": "x"}]},
        "messages[0].role",
        "invalid_value",
    ),
    (
        {"model": "m", "messages": [{"role": "user", "content": 5}]},
        "messages[0].content",
        "invalid_type",
    ),
    (chat_body(max_tokens="10"), "max_tokens", "invalid_type"),
    (chat_body(max_tokens=0), "max_tokens", "integer_below_min_value"),
    (chat_body(max_tokens=True), "max_tokens", "invalid_type"),
    (chat_body(n=0), "n", "integer_below_min_value"),
    (chat_body(n=1.5), "n", "invalid_type"),
    (chat_body(stream="yes"), "stream", "invalid_type"),
    (chat_body(stream_options={"include_usage": True}), "stream_options", None),
    (chat_body(seed="x"), "seed", "invalid_type"),
]


@pytest.mark.parametrize(("body", "param", "code"), BAD_BODIES)
async def test_malformed_requests_get_openai_style_400_and_server_keeps_serving(
    body: Any, param: str | None, code: str | None
) -> None:
    with trio.fail_after(10):
        async with open_server() as server, httpx.AsyncClient() as client:
            url = server.base_url + "/chat/completions"
            response = await post(client, url, body)
            after = await post(client, url, chat_body())
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert error["code"] == code
    assert error["message"]
    assert after.status_code == 200
    assert server.statistics().connections_accepted == 1  # 400s keep the connection


async def test_unknown_path_is_404_and_wrong_method_is_405() -> None:
    with trio.fail_after(10):
        async with open_server() as server, httpx.AsyncClient() as client:
            missing = await client.post(server.base_url + "/completions/nope", headers=AUTH)
            wrong = await client.get(server.base_url + "/chat/completions", headers=AUTH)
            after = await post(client, server.base_url + "/chat/completions", chat_body())
    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "invalid_request_error"
    assert "/v1/completions/nope" in missing.json()["error"]["message"]
    assert wrong.status_code == 405
    assert wrong.headers["allow"] == "POST"
    assert wrong.json()["error"]["type"] == "invalid_request_error"
    assert after.status_code == 200
    stats = server.statistics()
    assert stats.responses_by_status == {404: 1, 405: 1, 200: 1}
    assert stats.requests_by_path == {"other": 1, "/v1/chat/completions": 2}


async def test_paths_without_v1_prefix_work_too() -> None:
    with trio.fail_after(10):
        async with open_server() as server, httpx.AsyncClient() as client:
            response = await post(
                client, f"http://127.0.0.1:{server.port}/chat/completions", chat_body()
            )
    assert response.status_code == 200


async def test_keep_alive_reuses_one_connection_and_connection_close_is_honoured() -> None:
    with trio.fail_after(10):
        async with open_server() as server:
            async with httpx.AsyncClient() as client:
                for _ in range(5):
                    response = await post(
                        client, server.base_url + "/chat/completions", chat_body()
                    )
                    assert response.status_code == 200
            assert server.statistics().connections_accepted == 1
            stream = await trio.open_tcp_stream("127.0.0.1", server.port)
            async with stream:
                await stream.send_all(
                    b"GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
                )
                received = b""
                while chunk := await stream.receive_some(65536):
                    received += chunk  # the server closes, so this loop ends
    assert received.startswith(b"HTTP/1.1 200 ")
    assert received.endswith(b'{"status":"ok"}')


async def test_chunked_request_body_is_accepted() -> None:
    async def body_parts() -> Any:
        raw = json.dumps(chat_body()).encode()
        for i in range(0, len(raw), 10):
            yield raw[i : i + 10]

    with trio.fail_after(10):
        async with open_server() as server, httpx.AsyncClient() as client:
            response = await client.post(
                server.base_url + "/chat/completions", content=body_parts(), headers=AUTH
            )
    assert response.status_code == 200
    assert response.json()["object"] == "chat.completion"


async def test_oversized_body_is_413_and_the_server_keeps_serving() -> None:
    big = json.dumps(chat_body(padding="x" * 5000)).encode()
    with trio.fail_after(10):
        async with open_server(max_body_bytes=2000) as server:
            async with httpx.AsyncClient() as client:
                url = server.base_url + "/chat/completions"
                response = await client.post(url, content=big, headers=AUTH)
                assert response.status_code == 413
                assert response.json()["error"]["code"] == "request_too_large"
            async with httpx.AsyncClient() as client:
                after = await post(client, server.base_url + "/chat/completions", chat_body())
                assert after.status_code == 200


async def test_oversized_chunked_body_is_413_once_it_crosses_the_limit() -> None:
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer k\r\n"
        b"transfer-encoding: chunked\r\n\r\n"
    )
    chunk = b"x" * 1000
    with trio.fail_after(10):
        async with open_server(max_body_bytes=2500) as server:
            stream = await trio.open_tcp_stream("127.0.0.1", server.port)
            async with stream:
                await stream.send_all(head)
                received = b""
                for _ in range(3):  # the third chunk crosses 2,500 bytes
                    await stream.send_all(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                while piece := await stream.receive_some(65536):
                    received += piece  # the server answers and closes
    assert received.startswith(b"HTTP/1.1 413 ")
    assert b"connection: close" in received.lower()
    assert b'"request_too_large"' in received


async def test_bad_sim_header_is_400_naming_the_header() -> None:
    with trio.fail_after(10):
        async with open_server() as server, httpx.AsyncClient() as client:
            url = server.base_url + "/chat/completions"
            for value in (
                "not json",
                "[1]",
                '{"latency": 1}',
                '{"fault": "nope"}',
                '{"ttft": "x:1"}',
            ):
                response = await post(
                    client, url, chat_body(), headers={SIM_HEADER.decode(): value}
                )
                assert response.status_code == 400, value
                assert response.json()["error"]["param"] == "x-trioclient-sim"


async def test_handler_crash_drops_only_that_connection() -> None:
    with trio.fail_after(10):
        async with open_server() as server:
            server.script_faults(["handler_crash"])
            async with httpx.AsyncClient() as client:
                with pytest.raises(httpx.RemoteProtocolError):
                    await post(client, server.base_url + "/chat/completions", chat_body())
                after = await post(client, server.base_url + "/chat/completions", chat_body())
            assert after.status_code == 200
            stats = server.statistics()
    assert stats.handler_errors == 1
    assert stats.faults_injected == {"handler_crash": 1}


async def test_statistics_count_requests_connections_and_tokens() -> None:
    with trio.fail_after(10):
        # a little latency keeps all six requests in flight at once
        async with open_server(ttft=0.2) as server:

            async def one(client: httpx.AsyncClient) -> int:
                response = await post(client, server.base_url + "/chat/completions", chat_body())
                return int(response.json()["usage"]["completion_tokens"])

            totals: list[int] = []
            async with httpx.AsyncClient() as client:

                async def run() -> None:
                    totals.append(await one(client))

                async with trio.open_nursery() as nursery:
                    for _ in range(6):
                        nursery.start_soon(run)
                await client.get(f"http://127.0.0.1:{server.port}/health")
            stats = server.statistics()
    assert stats.chat_requests == 6
    assert stats.requests_total == 7
    assert stats.requests_by_path == {"/v1/chat/completions": 6, "/health": 1}
    assert stats.completion_tokens == sum(totals)
    assert stats.connections_accepted == 6  # six requests at once need six connections
    assert stats.peak_in_flight_requests == 6
    assert stats.peak_connections == 6
    assert stats.in_flight_requests == 0
    assert stats.rate_limited == 0


async def test_ttft_and_tps_pace_the_stream_on_schedule() -> None:
    config = ServerConfig(ttft=0.2, tps=50, answer_tokens=10)
    with trio.fail_after(10):
        async with open_server(config) as server, httpx.AsyncClient() as client:
            start = trio.current_time()
            arrivals = []
            body = chat_body(stream=True)
            async with client.stream(
                "POST", server.base_url + "/chat/completions", json=body, headers=AUTH
            ) as response:
                async for line in response.aiter_lines():
                    if line.startswith("data: ") and '"content":"' in line:
                        arrivals.append(trio.current_time() - start)
            stats = server.statistics()
    assert len(arrivals) == 11  # role chunk + 10 tokens
    assert 0.18 <= arrivals[0] <= 0.45
    # the last token is due at ttft + 9/50 = 0.38 s
    assert 0.36 <= arrivals[-1] <= 0.7
    assert stats.paced_chunks == 10
    assert stats.stream_lag_max < 0.1


async def test_non_streaming_waits_for_the_whole_generation() -> None:
    with trio.fail_after(10):
        async with open_server(ttft=0.1, tps=40, answer_tokens=5) as server:
            async with httpx.AsyncClient() as client:
                start = trio.current_time()
                response = await post(client, server.base_url + "/chat/completions", chat_body())
                elapsed = trio.current_time() - start
    assert response.status_code == 200
    assert 0.2 - 0.01 <= elapsed < 0.6  # 0.1 + 4/40


async def test_sim_header_overrides_latency_per_request() -> None:
    with trio.fail_after(10):
        async with open_server(ttft=5) as server, httpx.AsyncClient() as client:
            start = trio.current_time()
            headers = {SIM_HEADER.decode(): json.dumps({"ttft": 0, "tps": None})}
            response = await post(
                client, server.base_url + "/chat/completions", chat_body(), headers=headers
            )
            assert trio.current_time() - start < 2
    assert response.status_code == 200


async def test_idle_keep_alive_connection_is_closed_after_the_timeout() -> None:
    with trio.fail_after(10):
        async with open_server(keepalive_timeout=0.2) as server:
            stream = await trio.open_tcp_stream("127.0.0.1", server.port)
            async with stream:
                start = trio.current_time()
                assert await stream.receive_some(100) == b""
                assert trio.current_time() - start >= 0.15


async def test_set_config_applies_to_later_requests() -> None:
    with trio.fail_after(10):
        async with open_server(answer_tokens=5) as server, httpx.AsyncClient() as client:
            url = server.base_url + "/chat/completions"
            before = (await post(client, url, chat_body())).json()
            server.set_config(answer_tokens=9)
            after = (await post(client, url, chat_body())).json()
            with pytest.raises(ValueError, match="port"):
                server.set_config(port=server.port + 1)
    assert before["usage"]["completion_tokens"] == 5
    assert after["usage"]["completion_tokens"] == 9


async def test_client_leaving_mid_stream_is_routine(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG", logger="trioclient.testing")
    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer k\r\n"
        b"content-type: application/json\r\ncontent-length: %d\r\n\r\n"
    )
    body = json.dumps(chat_body(stream=True)).encode()
    with trio.fail_after(10):
        async with open_server(tps=50, answer_tokens=100) as server:
            for _ in range(3):
                stream = await trio.open_tcp_stream("127.0.0.1", server.port)
                await stream.send_all(request % len(body) + body)
                assert (await stream.receive_some(65536)).startswith(b"HTTP/1.1 200 ")
                await stream.aclose()  # gone, with the server mid-stream
            for _ in range(100):  # the server notices at its next paced write
                if not server.statistics().connections_open:
                    break
                await trio.sleep(0.05)
            assert server.statistics().connections_open == 0
            async with httpx.AsyncClient() as client:
                after = await post(client, server.base_url + "/chat/completions", chat_body())
            stats = server.statistics()
    assert after.status_code == 200
    assert stats.handler_errors == 0
    assert stats.in_flight_requests == 0
    assert caplog.records == []


def dechunk(body: bytes) -> bytes:
    """Decode a chunked body (an independent reading of RFC 9112 section 7.1)."""
    out = b""
    while True:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            assert body == b"\r\n", body  # no trailers, then the end
            return out
        out += body[:size]
        assert body[size : size + 2] == b"\r\n"
        body = body[size + 2 :]


@pytest.mark.parametrize("version", [b"1.1", b"1.0"])
async def test_stream_framing_follows_the_peer_http_version(version: bytes) -> None:
    # HTTP/1.1 peers get a chunked body; HTTP/1.0 has no chunked encoding, so the
    # body runs to the close. The SSE inside must be the same either way.
    body = json.dumps(chat_body(stream=True)).encode()
    request = (
        b"POST /v1/chat/completions HTTP/%b\r\nhost: x\r\nauthorization: Bearer k\r\n"
        b"content-type: application/json\r\nconnection: close\r\ncontent-length: %d\r\n\r\n%b"
    ) % (version, len(body), body)
    with trio.fail_after(10):
        async with open_server(answer_tokens=4) as server:
            stream = await trio.open_tcp_stream("127.0.0.1", server.port)
            async with stream:
                await stream.send_all(request)
                received = b""
                while piece := await stream.receive_some(65536):
                    received += piece  # connection: close, so the server ends it
    head, _, payload = received.partition(b"\r\n\r\n")
    header_lines = head.lower().split(b"\r\n")
    assert header_lines[0].startswith(b"http/1.1 200 ")
    chunked = b"transfer-encoding: chunked" in header_lines
    assert chunked == (version == b"1.1")
    events = parse_sse((dechunk(payload) if chunked else payload).decode())
    assert events[-1] == "[DONE]"
    deltas = [json.loads(e)["choices"][0]["delta"].get("content") for e in events[:-1]]
    assert len([d for d in deltas if d]) == 4


async def test_an_assert_in_the_block_reaches_the_caller_unwrapped() -> None:
    # pytest.raises(AssertionError) would miss an ExceptionGroup wrapping it.
    with trio.fail_after(10), pytest.raises(AssertionError, match="the block's own"):
        async with open_server() as server:
            assert server.port == 0, "the block's own assertion"


async def test_a_value_error_in_the_block_is_itself_and_the_server_stops() -> None:
    with trio.fail_after(10):
        with pytest.raises(ValueError, match="from the block") as caught:
            async with open_server() as server:
                port = server.port
                raise ValueError("from the block")
        assert not isinstance(caught.value, BaseExceptionGroup)
        with pytest.raises(OSError):  # the listener is closed
            await trio.open_tcp_stream("127.0.0.1", port)
