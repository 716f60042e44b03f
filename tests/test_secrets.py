"""The API key never shows, never travels in clear to a remote host, never follows a redirect.

Where a key could leak, each tested here with a key that is easy to find:

* reprs: the client, its statistics, requests and their headers, every exception the
  fault matrix produces, batch results;
* exceptions: ``str``, ``repr`` and the whole traceback text
  (``traceback.format_exception``, with causes and notes), for every fault kind;
* logs: everything logged at DEBUG by every logger during runs full of errors;
* the CLI: its stderr (on a pseudo-terminal, so the live progress draws), its output
  file, and the absence of any crash dump;
* text a server *echoes*: some servers and proxies quote the Authorization header back
  (in a 401's message, a debug page, an error event); trioclient must not carry that
  quote into its own messages, error bodies or output files.

And the transport rules: plain ``http://`` only to loopback unless the caller says so,
and a 3xx is an error, never followed, even through a caller's ``httpx.AsyncClient``
that follows redirects.
"""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trio.testing
from _faultproxy import Respond, http_response, open_fault_proxy, wait_until_quiet

import trioclient
from trioclient import RetryPolicy, Timeout
from trioclient._batch_file import run_batch_file
from trioclient.testing import FAULT_KINDS, FaultParams, open_server

KEY = "sk-SECRET-7f3a9c2e1b4d8f60"
MODEL = "trioclient-sim"
MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]
ROOT = Path(__file__).resolve().parent.parent
PARAMS = FaultParams(
    stall_seconds=0.3, huge_bytes=200_000, rate_limited_retry_after=0.01, trickle_bytes=256
)
QUICK = Timeout(total=5, first_byte=0.1, idle=0.1)
RETRY = RetryPolicy(max_retries=1, base_delay=0.01, max_delay=0.01)


def exception_texts(error: BaseException) -> list[str]:
    """Everything a program or a person might print of an exception."""
    texts = [str(error), repr(error), "".join(traceback.format_exception(error))]
    if isinstance(error, trioclient.APIError) and error.request is not None:
        texts.append(repr(error.request))
        texts.append(repr(error.request.headers))
    return texts


async def ask(client: trioclient.Client, stream: bool) -> None:
    if stream:
        async with client.chat.completions.stream(model=MODEL, messages=MESSAGES) as chunks:
            async for _ in chunks:
                pass
    else:
        await client.chat.completions.create(model=MODEL, messages=MESSAGES)


# --- reprs, exceptions and logs over every fault ---------------------------------------------


async def test_no_repr_exception_or_log_line_shows_the_key(
    caplog: pytest.LogCaptureFixture,
    thread_safe_autojump_clock: trio.testing.MockClock,
) -> None:
    # Autojump clock: the stalls and the 0.1 s deadlines that meet them are exact, and a
    # busy machine cannot make a normal answer late (this test failed under load on the
    # real clock).
    caplog.set_level(logging.DEBUG)  # every logger: trioclient's, httpx's, the server's
    errors: list[BaseException] = []
    texts: list[str] = []
    with trio.fail_after(30):
        async with open_server(fault_params=PARAMS) as server:
            async with httpx.AsyncClient() as http:
                # Our own transport, and a caller's httpx.AsyncClient (httpx and httpcore log
                # every request it sends, down to the headers being written, at DEBUG).
                for http_client in (None, http):
                    async with trioclient.Client(
                        api_key=KEY,
                        base_url=server.base_url,
                        timeout=QUICK,
                        retry=RETRY,
                        max_response_bytes=100_000,
                        http_client=http_client,
                    ) as client:
                        texts += [repr(client), str(client)]
                        for fault in FAULT_KINDS:
                            # Not streams through httpx's own transport: one left mid-way
                            # leaves httpcore's generators to the garbage collector, and a
                            # ResourceWarning (upstream httpx#3686; see the report).
                            for stream in (False, True) if http_client is None else (False,):
                                server.script_faults([fault, fault])
                                try:
                                    await ask(client, stream)
                                except trioclient.APIError as exc:
                                    errors.append(exc)
                        texts.append(repr(client.statistics()))
                        request = client.build_request({"model": MODEL, "messages": MESSAGES})
                        texts += [repr(request), repr(request.headers), str(request.headers)]
                        bodies = [
                            (f"q{i}", {"model": MODEL, "messages": MESSAGES}) for i in range(6)
                        ]
                        server.script_faults(["http_500", "reset_mid_body"] * 6)
                        results = await client.run_batch(bodies, retry=RetryPolicy(max_retries=0))
                        texts += [repr(r) for r in results]
                        errors += [r.error for r in results if r.error is not None]
            await wait_until_quiet(server)
    # Most faults are errors (a few are survived, e.g. a slow trickle).
    assert len(errors) >= 3 * len(FAULT_KINDS) - 9
    assert any(not r.ok for r in results)
    for error in errors:
        texts += exception_texts(error)
    texts += [caplog.text]
    texts += [record.getMessage() for record in caplog.records]
    assert any(r.name.startswith("httpx") for r in caplog.records)  # logs were looked at
    assert any(r.name.startswith("httpcore") for r in caplog.records)
    leaks = [text for text in texts if KEY in text]
    assert not leaks, leaks[0][:500]


async def test_a_callers_http_client_does_not_follow_a_redirect_either() -> None:
    async with open_server() as elsewhere, open_server() as server:
        location = f"{elsewhere.base_url}/chat/completions"
        moved = http_response(307, b"", [("location", location)], "Temporary Redirect")
        async with open_fault_proxy(server.port, Respond(moved)) as proxy:
            async with httpx.AsyncClient(follow_redirects=True) as http:
                async with trioclient.Client(
                    api_key=KEY, base_url=proxy.base_url, http_client=http
                ) as client:
                    with trio.fail_after(10), pytest.raises(trioclient.APIStatusError) as caught:
                        await ask(client, stream=False)
    assert caught.value.status_code == 307 and location in str(caught.value)
    assert elsewhere.statistics().requests_total == 0  # the key never went there


# --- plain http ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://api.x.ai/v1",
        "HTTP://API.OPENAI.COM/v1",
        "http://api.openai.com.:80/v1",
        "http://eu-west-1.api.x.ai/v1",
        "http://openrouter.ai/api/v1",
        "http://generativelanguage.googleapis.com/v1beta/openai",
        "http://api.mistral.ai/v1",
        "http://myorg.openai.azure.com/openai",
    ],
)
def test_plain_http_to_a_provider_host_is_refused_unless_asked_for(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ValueError, match="plain http://") as caught:
        trioclient.Client(api_key=KEY, base_url=url)
    assert "https://" in str(caught.value)
    assert "allow_insecure_http=True" in str(caught.value)
    assert KEY not in str(caught.value)
    monkeypatch.setenv("TRIOCLIENT_BASE_URL", url)  # the environment gets no pass either
    with pytest.raises(ValueError, match="plain http://"):
        trioclient.Client(api_key=KEY)
    monkeypatch.delenv("TRIOCLIENT_BASE_URL")
    trioclient.Client(api_key=KEY, base_url=url, allow_insecure_http=True)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/v1",
        "http://localhost:8000/v1",
        "http://[::1]:8000/v1",
        # Self-hosted servers over plain http, as with the openai SDK:
        "http://vllm:8000/v1",
        "http://10.0.0.7:8000/v1",
        "http://192.168.1.20/v1",
        "http://llm.lan.example.com/v1",
        "http://x.ai.example.com/v1",  # only the provider's own domain is protected
        "https://api.example.com/v1",
        "https://api.x.ai/v1",
    ],
)
def test_self_hosted_loopback_and_https_need_no_permission(url: str) -> None:
    trioclient.Client(api_key=KEY, base_url=url)


async def test_the_cli_refuses_plain_http_to_a_provider_host_in_one_line(tmp_path: Path) -> None:
    source = tmp_path / "in.txt"
    source.write_text("hello\n")
    result = await run_cli(
        "batch", str(source), "-o", str(tmp_path / "out.jsonl"), "--model", MODEL,
        "--base-url", "http://api.x.ai/v1",
    )  # fmt: skip
    err = result.stderr.decode()
    assert result.returncode == 1, err
    assert "plain http://" in err and "Traceback" not in err
    assert KEY not in err
    assert not (tmp_path / "out.jsonl").exists()


# --- the CLI: stderr with live progress, the output file, no crash dump ----------------------


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY",)}
    env.pop("TRIOCLIENT_BASE_URL", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["XAI_API_KEY"] = KEY
    env.update(extra)
    return env


async def run_cli(*args: str) -> subprocess.CompletedProcess[bytes]:
    with trio.fail_after(30):
        return await trio.run_process(
            [sys.executable, "-m", "trioclient", *args],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env=cli_env(),
        )


def write_requests(path: Path, n: int) -> None:
    path.write_text(
        "".join(
            json.dumps(
                {
                    "custom_id": f"req-{i}",
                    "method": "POST",
                    "url": "/v1/chat/completions",
                    "body": {"model": MODEL, "messages": [{"role": "user", "content": f"Q{i}"}]},
                }
            )
            + "\n"
            for i in range(n)
        )
    )


async def test_cli_batch_with_errors_shows_no_key_on_a_terminal_or_in_its_output(
    tmp_path: Path,
) -> None:
    import pty

    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_requests(source, 30)
    # malformed_json: a 200 that is not JSON, final at once (no retry waits). (A 200
    # carrying an error object is a ProviderError now, retried as its code says.)
    faults = {"malformed_json": 0.3, "html_error": 0.05}
    async with open_server(faults=faults, ttft=0.01, tps=200, seed=3) as server:
        # A pseudo-terminal as stderr, so the live progress display really draws.
        controller, terminal = pty.openpty()
        try:
            with trio.fail_after(30):
                process = await trio.lowlevel.open_process(
                    [sys.executable, "-m", "trioclient", "batch", str(source), "-o", str(out),
                     "--base-url", server.base_url, "--max-concurrent", "4"],
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=terminal,
                    env=cli_env(COLUMNS="120", TERM="xterm"),
                )  # fmt: skip
                os.close(terminal)
                terminal = -1
                screen = await trio.to_thread.run_sync(read_until_closed, controller)
                await process.wait()
        finally:
            os.close(controller)
            if terminal >= 0:
                os.close(terminal)
    text = screen.decode("utf-8", "replace")
    assert process.returncode in (0, 1), text  # 1: some requests failed for good
    assert "30/30" in text and "in flight" in text  # the live progress did draw
    assert "succeeded" in text  # and the summary
    assert "Traceback" not in text
    assert KEY not in text
    output = out.read_text()
    assert len(output.splitlines()) == 30
    assert '"error":{' in output  # errors were written, and still no key
    assert KEY not in output


def read_until_closed(fd: int) -> bytes:
    chunks = []
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:  # EIO: the other side of the pty closed
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)


# --- text a server echoes back ---------------------------------------------------------------

ECHO_BUG = (
    "server text quoted in errors is redacted only in raise_for_status's status message: "
    "snippets of 2xx bodies (_attempt.parse_json, _stream wrong content type / chunk not "
    "JSON), error-event messages (_stream._handle) and every error .body keep the key"
)


def echoed(status: int, body: str, kind: str = "application/json") -> bytes:
    return http_response(status, body.replace("{KEY}", KEY).encode(), [("content-type", kind)])


ECHOES = {
    "401-unmasked-key": echoed(
        401, '{"error":{"message":"Incorrect API key provided: {KEY}","code":"invalid_api_key"}}'
    ),
    "400-header-quoted": echoed(
        400, '{"error":{"message":"Bad header Authorization: Bearer {KEY}"}}'
    ),
    "200-debug-page": echoed(
        200, "<html><pre>Authorization: Bearer {KEY}</pre></html>", "text/html"
    ),
    "200-error-event": echoed(
        200,
        'data: {"id":"c","choices":[{"index":0,"delta":{"content":"a"}}]}\n\n'
        'data: {"error":{"message":"key {KEY} revoked"}}\n\n',
        "text/event-stream",
    ),
    "200-broken-chunk": echoed(200, 'data: {"key": "{KEY}\n\n', "text/event-stream"),
}


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("page", ECHOES)
async def test_a_key_the_server_echoes_is_redacted_from_errors(page: str, stream: bool) -> None:
    async with (
        open_server() as server,
        open_fault_proxy(server.port, Respond(ECHOES[page])) as proxy,
    ):
        async with trioclient.Client(
            api_key=KEY, base_url=proxy.base_url, retry=RetryPolicy(max_retries=0)
        ) as client:
            with trio.fail_after(10), pytest.raises(trioclient.APIError) as caught:
                await ask(client, stream)
    error = caught.value
    texts = [*exception_texts(error), repr(error.body), json.dumps(error.body, default=str)]
    assert [t for t in texts if KEY in t] == []
    assert "[redacted]" in " ".join(texts)


async def test_a_key_the_server_echoes_never_reaches_the_output_file() -> None:
    requests = io.StringIO(
        json.dumps(
            {
                "custom_id": "a",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {"model": MODEL, "messages": MESSAGES},
            }
        )
        + "\n"
    )
    output = io.StringIO()
    page = ECHOES["401-unmasked-key"]
    async with open_server() as server, open_fault_proxy(server.port, Respond(page)) as proxy:
        async with trioclient.Client(api_key=KEY, base_url=proxy.base_url) as client:
            with trio.fail_after(10):
                await run_batch_file(client, requests, output)
    record: dict[str, Any] = json.loads(output.getvalue())
    assert record["error"]["code"] == "invalid_api_key"
    assert KEY not in output.getvalue()


async def test_an_echoed_key_in_a_status_message_is_redacted() -> None:
    # The part that works today: the status error's own message.
    async with (
        open_server() as server,
        open_fault_proxy(server.port, Respond(ECHOES["401-unmasked-key"])) as proxy,
    ):
        async with trioclient.Client(api_key=KEY, base_url=proxy.base_url) as client:
            with trio.fail_after(10), pytest.raises(trioclient.AuthenticationError) as caught:
                await ask(client, stream=False)
    assert "Incorrect API key provided: [redacted]" in str(caught.value)
    assert all(KEY not in text for text in exception_texts(caught.value))


async def test_the_cli_names_a_refused_key_without_showing_it(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    write_requests(source, 3)
    async with (
        open_server() as server,
        open_fault_proxy(server.port, Respond(ECHOES["401-unmasked-key"])) as proxy,
    ):
        result = await run_cli("batch", str(source), "-o", str(tmp_path / "o.jsonl"),
                               "--base-url", proxy.base_url)  # fmt: skip
    err = result.stderr.decode()
    assert result.returncode == 1, err
    assert "refused the API key" in err
    assert "Traceback" not in err and KEY not in err
    assert result.stdout == b""
