"""Property tests: arbitrary input never gets past trioclient as anything but its own errors.

* **Streams**: arbitrary bytes, in arbitrary chunkings, as the body of a streamed
  completion: the whole pipeline (SSE decoding, chunk parsing, accumulation) ends in a
  completion or a trioclient :class:`~trioclient.APIError`, never anything else. (The
  SSE decoder on its own is fuzzed in ``test_sse.py``; here it is the decoder as the
  client uses it, plus raw random bytes, plus a check that its work grows linearly.)
* **Response parsing**: arbitrary JSON, and valid bodies with one part replaced by
  arbitrary JSON, into ``ChatCompletion.from_dict`` and ``ChatCompletionChunk.from_dict``:
  a model that gives its input back unchanged, or ``APIResponseValidationError``.
* **The retry policy**, through the real client over ``httpx.MockTransport``: sequences
  of statuses, ``Retry-After`` values, latencies and caller deadlines chosen by
  hypothesis, on trio's MockClock. Attempts are exactly what the policy allows, a status
  that is not retryable is never retried, and no sleep runs past the caller's deadline.

Hypothesis and pytest-trio do not mix in one test function, so each property is a plain
test that calls ``trio.run`` itself (with a MockClock where time matters).
"""

from __future__ import annotations

import itertools
import json
import math
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import attrs
import httpx
import pytest
import trio
import trio.testing
from _fakes import chunk_object, completion, sse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import trioclient
from trioclient import (
    APIError,
    APIResponseValidationError,
    ChatCompletion,
    ChatCompletionChunk,
    RetryPolicy,
    Timeout,
)
from trioclient._body import encode_body, jsonable
from trioclient._stream import ChunkAccumulator
from trioclient.sse import SSEDecoder, SSEError

URL = "http://127.0.0.1:9/v1"
MESSAGES = [{"role": "user", "content": "hi"}]
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --- JSON, arbitrary and shaped like the API -------------------------------------------

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=6)
)
json_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=12,
)
# Keys the parsers look for, so that arbitrary values reach the deep parts of them.
_API_KEYS = [
    "id", "object", "created", "model", "choices", "usage", "system_fingerprint", "index",
    "message", "delta", "finish_reason", "role", "content", "tool_calls", "refusal",
    "reasoning_content", "function", "name", "arguments", "type", "prompt_tokens",
    "completion_tokens", "total_tokens", "error",
]  # fmt: skip
shaped_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(_API_KEYS), inner, max_size=7)
    ),
    max_leaves=30,
)

VALID_COMPLETION: dict[str, Any] = completion(
    "hi",
    model="grok-4",
    tokens=(1, 2),
    message={
        "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
        ]
    },
)
VALID_CHUNK: dict[str, Any] = chunk_object(
    "h",
    role="assistant",
    id="chatcmpl-1",
    model="grok-4",
    tool_calls=[{"index": 0, "id": "c1", "function": {"arguments": "{"}}],
    usage=None,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += _paths(item, (*prefix, i))
    return found


@st.composite
def mutated(draw: st.DrawFn, valid: dict[str, Any]) -> Any:
    """``valid`` with one part (perhaps the whole) replaced by arbitrary JSON."""
    body = json.loads(json.dumps(valid))
    path = draw(st.sampled_from(_paths(body)))
    replacement = draw(shaped_values)
    if not path:
        return replacement
    parent = body
    for step in path[:-1]:
        parent = parent[step]
    if draw(st.booleans()) and isinstance(parent, dict):
        del parent[path[-1]]  # or the key goes missing altogether
    else:
        parent[path[-1]] = replacement
    return body


def parses_or_says_why(parse: Callable[[Any], Any], obj: Any) -> None:
    snapshot = json.dumps(obj)
    try:
        model = parse(obj)
    except APIResponseValidationError as exc:
        assert str(exc).startswith("invalid response:"), str(exc)
        return
    # A model keeps everything it was built from, and does not touch its input.
    assert json.dumps(model.to_dict()) == snapshot
    assert json.dumps(obj) == snapshot


@given(
    st.dictionaries(
        st.text(max_size=6),
        json_values | st.text(st.characters(categories=["Cs", "L", "Zl"]), max_size=4),
        max_size=4,
    )
)
@SETTINGS
def test_a_body_is_encoded_as_json_dumps_would(body: dict[str, Any]) -> None:
    """The request encoder (a C encoder built once) writes what ``json.dumps`` writes
    with trioclient's options, byte for byte: NaN, surrogates and all."""
    expected = json.dumps(body, ensure_ascii=False, separators=(",", ":"), default=jsonable)
    try:
        wanted = expected.encode()
    except UnicodeEncodeError:  # a lone surrogate: not sendable as UTF-8 either way
        with pytest.raises(TypeError, match="not JSON-serializable"):
            encode_body(body)
        return
    assert encode_body(body) == wanted


@given(st.one_of(json_values, shaped_values, mutated(VALID_COMPLETION)))
@settings(SETTINGS, max_examples=400)
def test_any_json_is_a_completion_or_a_validation_error(obj: Any) -> None:
    parses_or_says_why(ChatCompletion.from_dict, obj)


@given(st.one_of(json_values, shaped_values, mutated(VALID_CHUNK)))
@settings(SETTINGS, max_examples=400)
def test_any_json_is_a_chunk_or_a_validation_error(obj: Any) -> None:
    parses_or_says_why(ChatCompletionChunk.from_dict, obj)


@given(st.lists(mutated(VALID_CHUNK), max_size=6))
@settings(SETTINGS, max_examples=100)
def test_any_valid_chunks_accumulate_into_a_completion(objs: list[Any]) -> None:
    accumulator = ChunkAccumulator()
    for obj in objs:
        try:
            accumulator.add(ChatCompletionChunk.from_dict(obj))
        except APIResponseValidationError:
            continue
    assert isinstance(accumulator.completion(), ChatCompletion)


# --- streams: arbitrary bytes through the client's stream -----------------------------------


_stream_pieces = st.one_of(
    st.binary(max_size=12),
    st.sampled_from(
        [
            b"data: ",
            b"data: [DONE]\n\n",
            b"event: error\n",
            b"\n\n",
            b"\r\n",
            b"\r",
            b": keep-alive\n\n",
            b"retry: 10\n",
            b"id: 7\n",
            b'data: {"error": {"message": "boom"}}\n\n',
            b"\xef\xbb\xbf",
            b"\xff\xfe",
            sse(VALID_CHUNK),
        ]
    ),
    mutated(VALID_CHUNK).map(sse),
    shaped_values.map(sse),
)


class ChunkedBody(httpx.AsyncByteStream):
    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = pieces

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for piece in self.pieces:
            await trio.lowlevel.checkpoint()
            yield piece


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


@given(
    st.lists(_stream_pieces, max_size=12),
    st.lists(st.integers(0, 10_000), max_size=12),
    st.integers(64, 4096),
)
@settings(SETTINGS, max_examples=150)
def test_any_bytes_as_a_stream_end_in_a_completion_or_a_trioclient_error(
    pieces: list[bytes], cuts: list[int], bound: int
) -> None:
    body = b"".join(pieces)

    def respond(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            headers={"content-type": "text/event-stream"},
            stream=ChunkedBody(split(body, cuts)),
        )

    async def main() -> None:
        async with trioclient.Client(
            api_key="sk-prop",
            base_url=URL,
            transport=httpx.MockTransport(respond),
            retry=RetryPolicy(max_retries=0),
            max_response_bytes=bound,
        ) as client:
            received: list[ChatCompletionChunk] = []
            try:
                async with client.chat.completions.stream(model="m", messages=MESSAGES) as s:
                    async for chunk in s:
                        received.append(chunk)
                    final = await s.get_final_completion()
            except APIError as exc:
                if exc.partial is not None:
                    assert isinstance(exc.partial, ChatCompletion)
            else:
                assert b"data: [DONE]" in body or b"data:[DONE]" in body
                assert isinstance(final, ChatCompletion)
                assert all(isinstance(c, ChatCompletionChunk) for c in received)
            assert client.limiter.borrowed_tokens == 0

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


@given(st.binary(max_size=300), st.lists(st.integers(0, 300), max_size=10), st.integers(1, 64))
@SETTINGS
def test_random_bytes_raise_only_sse_error(data: bytes, cuts: list[int], limit: int) -> None:
    decoder = SSEDecoder(max_event_size=limit)
    try:
        for piece in split(data, cuts):
            decoder.feed(piece)
        decoder.close()
    except SSEError as exc:
        assert f"max_event_size={limit}" in str(exc)


# Inputs that make a careless decoder quadratic: pending partial lines, a CR that may be
# half of a CRLF, an event's data lines, comments that never dispatch.
ADVERSARIAL: dict[str, tuple[Callable[[int], bytes], int]] = {
    "one-line-byte-by-byte": (lambda n: b"data: " + b"x" * n, 1),
    "bare-CRs-byte-by-byte": (lambda n: b"\r" * n, 1),
    "many-data-lines-one-event": (lambda n: b"data: x\n" * (n // 8), 7),
    "comments": (lambda n: b": c\n" * (n // 4), 5),
    "tiny-events": (lambda n: b"data:\n\n" * (n // 7), 64),
}


def _feed_seconds(data: bytes, step: int) -> float:
    # CPU time of this thread, not wall time: on a busy machine the wall clock also
    # counts the time other processes ran, which made a 4x input look 8x slower.
    best = math.inf
    for _ in range(3):
        decoder = SSEDecoder(max_event_size=len(data) + 16)
        start = time.thread_time()
        for i in range(0, len(data), step):
            decoder.feed(data[i : i + step])
        best = min(best, time.thread_time() - start)
    return best


@pytest.mark.parametrize("shape", ADVERSARIAL)
def test_decoder_work_grows_linearly(shape: str) -> None:
    make, step = ADVERSARIAL[shape]
    n = 20_000
    small, large = _feed_seconds(make(n), step), _feed_seconds(make(4 * n), step)
    # Linear: ~4x for 4x the input. Quadratic would be ~16x.
    assert large < 8 * small + 0.01, (small, large)


# --- the retry policy, through the real client ---------------------------------------------

RETRYABLE = {408, 409, 429, 500, 502, 503, 504, "connect"}


@attrs.frozen
class Answer:
    """One scripted response: a status (or a refused connection), a Retry-After, a delay."""

    status: int | str
    retry_after: float | None
    latency: float


answers = st.builds(
    Answer,
    st.sampled_from(
        [
            200,
            400,
            401,
            403,
            404,
            408,
            409,
            422,
            429,
            "quota",
            "no-retry",
            500,
            502,
            503,
            504,
            "connect",
        ]
    ),
    st.none() | st.floats(0, 50),
    st.sampled_from([0.0, 0.0, 0.5, 3.0]),
)
policies = st.builds(
    RetryPolicy,
    max_retries=st.integers(0, 5),
    base_delay=st.floats(0, 4),
    max_delay=st.floats(0, 20),
    max_retry_after=st.floats(0, 30),
)


def expected_attempts(script: list[Answer], policy: RetryPolicy) -> int:
    """Attempts the policy allows with no deadline: up to the first final answer (past
    the script's end, every answer is a success)."""
    for i in range(policy.max_retries + 1):
        if i >= len(script) or script[i].status not in RETRYABLE:
            return i + 1
    return policy.max_retries + 1


@given(
    st.lists(answers, min_size=1, max_size=7),
    policies,
    # Off the millisecond grid that waits and latencies fall on, so a deadline never
    # coincides with a retry's wake-up (that boundary is its own test, below).
    st.none() | st.floats(0.1, 120).map(lambda d: round(d, 3) + 0.0004),
)
@settings(SETTINGS, max_examples=150)
def test_retries_follow_the_policy_and_never_outlive_the_deadline(
    script: list[Answer], policy: RetryPolicy, deadline: float | None
) -> None:
    # Past the script's end every answer is a success.
    starts: list[float] = []
    ends: list[float] = []
    cancelled_in_attempt = False

    async def respond(request: httpx.Request) -> httpx.Response:
        nonlocal cancelled_in_attempt
        starts.append(trio.current_time())
        answer = script[len(starts) - 1] if len(starts) <= len(script) else Answer(200, None, 0)
        try:
            await trio.sleep(answer.latency)
        except trio.Cancelled:
            cancelled_in_attempt = True
            raise
        ends.append(trio.current_time())
        headers = {}
        if answer.retry_after is not None:
            headers["retry-after-ms"] = str(int(answer.retry_after * 1000))
        if answer.status == "connect":
            raise httpx.ConnectError("refused", request=request)
        if answer.status == 200:
            return httpx.Response(
                200,
                json={"choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}}]},
            )
        status, code = (
            (429, "insufficient_quota") if answer.status == "quota" else (answer.status, "x")
        )
        if answer.status == "no-retry":
            status, headers["x-should-retry"] = 503, "false"
        return httpx.Response(
            int(status), json={"error": {"message": "no", "code": code}}, headers=headers
        )

    outcome: list[Any] = []

    async def main() -> None:
        async with trioclient.Client(
            api_key="sk-prop",
            base_url=URL,
            transport=httpx.MockTransport(respond),
            retry=policy,
            timeout=Timeout(total=None),
        ) as client:
            start = trio.current_time()
            limit = math.inf if deadline is None else deadline
            with trio.move_on_after(limit) as scope:
                try:
                    outcome.append(
                        await client.chat.completions.create(model="m", messages=MESSAGES)
                    )
                except APIError as exc:
                    outcome.append(exc)
            finished = trio.current_time() - start
            # Never anything past the caller's deadline: no attempt starts after it, and
            # a failure given up early is raised before it.
            assert all(t - start <= limit for t in starts)
            assert finished <= limit + 1e-9
            if scope.cancelled_caught:
                # The deadline fell inside an attempt, never in a retry's sleep.
                assert cancelled_in_attempt
            assert client.limiter.borrowed_tokens == 0
            stats = client.statistics()
            assert stats.requests_sent == len(starts)
            assert stats.retries == len(starts) - 1

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))

    attempts = len(starts)
    allowed = expected_attempts(script, policy)
    assert 1 <= attempts <= allowed <= policy.max_retries + 1
    if deadline is None:
        assert attempts == allowed
        last = script[attempts - 1] if attempts <= len(script) else Answer(200, None, 0)
        assert isinstance(outcome[0], ChatCompletion) == (last.status == 200)
    # Never a retry after an answer that is final.
    for answer in script[: attempts - 1]:
        assert answer.status in RETRYABLE
    # Each wait honoured the server's word (capped) before the next attempt.
    for i in range(1, attempts):
        asked = script[i - 1].retry_after
        if asked is not None and script[i - 1].status not in ("connect",):
            assert (
                starts[i] - ends[i - 1]
                >= min(int(asked * 1000) / 1000, policy.max_retry_after) - 1e-9
            )


async def test_a_retry_wait_ending_exactly_at_the_deadline_is_not_started(
    autojump_clock: trio.testing.MockClock,
) -> None:
    calls = 0

    def respond(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(
            503, json={"error": {"message": "busy"}}, headers={"retry-after": "10"}
        )

    async with trioclient.Client(
        api_key="sk-prop", base_url=URL, transport=httpx.MockTransport(respond)
    ) as client:
        start = trio.current_time()
        with trio.move_on_after(10), pytest.raises(trioclient.InternalServerError):
            await client.chat.completions.create(model="m", messages=MESSAGES)
        assert trio.current_time() == start  # failed at once, without the useless wait
    assert calls == 1
