"""An embedded OpenAI-compatible chat-completions server for tests, demos and load tests.

It speaks real HTTP/1.1 on a real socket (trio + h11), so any client, ours or the
official `openai` package, talks to it exactly as to a remote API. It shares no
protocol code with trioclient's client: two independent readings of the OpenAI API
make a test of one against the other mean something.

    async with trioclient.testing.open_server(rpm=120, ttft="lognormal:0.2,0.5") as server:
        client = openai.AsyncOpenAI(api_key="sk-test", base_url=server.base_url)
        ...
        assert server.statistics().peak_in_flight_requests <= 8

What it serves: `POST /v1/chat/completions` (JSON or SSE streaming, `n`, `max_tokens`
/ `max_completion_tokens`, `stream_options.include_usage`, `seed`), `GET /v1/models`,
`GET /v1/models/{id}`, `POST /v1/embeddings` (deterministic unit vectors from a hash
of each input, float or base64), `POST /v1/responses` (whole or streamed events,
answers stored for `previous_response_id`; an unknown id is a 404), `GET /health`; the
same paths without `/v1` also work. Every model endpoint has the chat endpoint's
checks, rate-limit buckets and faults (a scripted fault goes to the next model
request, whichever path it names).
Answers are deterministic readable text derived from the prompt (+ seed and choice
index); `usage.completion_tokens` equals the number of streamed content chunks.

What it simulates, per server (`ServerConfig`, also `open_server(**fields)`):

* latency: `ttft` (time to first token) and `tps` (tokens per second), each a
  `Distribution` (fixed, uniform or lognormal; strings like `"uniform:0.1,0.3"`).
  Stream chunk i is sent at `start + ttft + i / tps` (no drift);
* rate limits: `rpm` / `tpm` token buckets per API key (start full, refill
  continuously); 429 with `retry-after` / `retry-after-ms`; the six
  `x-ratelimit-*` headers on every chat response when a limit is configured;
  `insufficient_quota=True` makes every chat request a quota 429;
* faults: by probability (`faults={"http_503": 0.05}`) or scripted
  (`server.script_faults([None, "reset_mid_stream"])`); kinds in `FAULT_KINDS`,
  knobs in `FaultParams`.

What it counts: `server.statistics()` is a frozen snapshot of requests by path and
status, 429s, faults by kind, connections (accepted, open, peak), in-flight requests
(now and peak: what a test checks to prove a client's concurrency limit held),
tokens served, and how late paced stream chunks left against their schedule
(`stream_lag_p50` / `p99` / `max`).

Per request, the `x-trioclient-sim` header overrides the server config with a JSON
object of any of: `"fault"` (a kind, or null for none), `"ttft"`, `"tps"` (number or
distribution string; tps null = unpaced) and `"answer_tokens"`. Example:
`x-trioclient-sim: {"fault": "http_500"}`. A bad header is a 400 naming it.

Faults, and what a stream-only fault does to a non-streaming response:

* `http_500`/`http_502`/`http_503`/`http_504`: that status with an OpenAI error body;
* `html_error`: a 502 with an nginx-style HTML page (text/html);
* `rate_limited`: a 429 with `retry-after-ms` = `FaultParams.rate_limited_retry_after`;
* `reset_before_response`: TCP RST after reading the request;
* `reset_mid_body` / `reset_mid_stream`: half the body (or some chunks), then RST;
* `truncated_stream`: some chunks, then a clean end without `[DONE]`
  (non-streaming: half the body, then a clean close short of Content-Length);
* `malformed_json` / `malformed_chunk`: the body (or one SSE event) is cut-off JSON;
* `error_event`: mid-stream `data: {"error": ...}` then the end (non-streaming: a
  200 whose body is an error object);
* `stall_before_first_byte` / `stall_between_chunks`: sleep `stall_seconds`;
* `slow_trickle`: the body in `trickle_bytes` writes every `trickle_interval`;
* `huge_response`: an answer of at least `huge_bytes` (streamed as ~4 KiB deltas);
* `wrong_content_type`: JSON as text/html (streams as text/plain);
* `handler_crash`: the handler raises, its connection drops, the server carries on.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._config import FAULT_KINDS as FAULT_KINDS
    from ._config import Distribution as Distribution
    from ._config import FaultParams as FaultParams
    from ._config import ServerConfig as ServerConfig
    from ._config import parse_distribution as parse_distribution
    from ._ratelimit import format_duration as format_duration
    from ._server import Server as Server
    from ._server import open_server as open_server
    from ._server import serve as serve
    from ._stats import ServerStatistics as ServerStatistics
    from ._validate import SIM_HEADER as SIM_HEADER

# Loaded on first use, so that importing the pytest plugin (which pytest does in every
# run where trioclient is installed) costs nothing until a fixture is used.
_LAZY = {
    "FAULT_KINDS": "._config",
    "Distribution": "._config",
    "FaultParams": "._config",
    "ServerConfig": "._config",
    "parse_distribution": "._config",
    "format_duration": "._ratelimit",
    "SIM_HEADER": "._validate",
    "Server": "._server",
    "ServerStatistics": "._stats",
    "open_server": "._server",
    "serve": "._server",
}

__all__ = [
    "FAULT_KINDS",
    "SIM_HEADER",
    "Distribution",
    "FaultParams",
    "Server",
    "ServerConfig",
    "ServerStatistics",
    "format_duration",
    "open_server",
    "parse_distribution",
    "serve",
]


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name, __name__), name)
    if isinstance(value, type) or callable(value):
        # Tracebacks and reprs say trioclient.testing.Server, the public name.
        try:
            value.__module__ = __name__
        except (AttributeError, TypeError):
            pass
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
