"""The batch engine: many requests, bounded memory, results as they finish.

::

    async with client.batch(bodies, max_concurrent=50, rpm=1_200) as results:
        async for result in results:
            print(result.index, result.response.content if result.ok else result.error)

How it is built, and why:

* **A producer pulls lazily.** One task takes items from ``requests`` (an iterable or
  an async iterable) only when there is room: it holds one *window* token per item
  from the moment it pulls it until the caller has received its result. The window is
  ``max_concurrent`` plus a little slack (``ordered=False``) or plus the reorder window
  (``ordered=True``), so memory grows with concurrency, never with the job's length:
  a long job costs no more memory than a short one at the same concurrency.
* **A fixed crew of workers** (``max_concurrent`` tasks) takes items from a channel
  with no buffer, so an item leaves the producer only when a worker is free. No task
  per request is ever parked on a semaphore, unlike ``gather`` over everything.
* **Ordered mode** holds finished results until every earlier one is ready; because
  each held result keeps its window token, one slow early request stops *admission*
  at the window's edge instead of letting the buffer grow without end.
* **A failed item is a result**, never an exception: its ``error`` holds the
  trioclient :class:`~trioclient.APIError` (after the retries the policy allows), or
  the ``ValueError``/``TypeError`` that rejected a malformed body before anything was
  sent (``attempts == 0``). The nursery and the other items never see it.
* **Pacing** is per attempt (retries included), through the request path's
  :class:`~trioclient._pacer.Pacer` hook: the caller's ``rpm``/``tpm`` budgets, the
  server's limits read from its ``x-ratelimit-*`` headers (so the batch slows down
  *before* the first 429, not after), and the client-wide 429 gate.
* **Streams** (``"stream": True`` in a body) are read whole by the engine. Nobody has
  seen a partial answer, so a stream that is cut, malformed or carries an error event
  mid-way is retried like any failed attempt (within the same ``RetryPolicy`` budget
  of attempts), and a cut stream is never a success.

Stopping:

* Leaving the ``async with`` block (``break``, an exception, a cancel scope) cancels
  the requests still running, at once.
* ``stop_on_error=True``: the first final failure stops the batch. Requests in flight
  are cancelled and no new ones start; the results that had finished are still
  yielded (in index order when ``ordered=True``, the cancelled indices skipped), the
  failure among them; then the iteration ends and ``results.failure`` names it.
  :func:`run_batch` raises :class:`BatchError` instead, since it cannot return the
  complete list it promises.
* An ``requests`` iterable that raises stops admission; the results of the items
  already admitted are yielded, then the iteration raises :class:`BatchError` from
  the iterable's exception.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any, Self

import attrs
import httpx
import trio
from trio_util import AsyncValue

from ._attempt import parse_chat_completion
from ._background import describe_leaves, open_background
from ._batch_results import BatchError, BatchProgress, BatchResult
from ._body import build_body
from ._config import Timeout
from ._endpoints import DEFAULT_URL, endpoint_for, usage_of
from ._exceptions import APIError
from ._models import ChatCompletion
from ._pacing import BudgetPass, Budgets, Sent, estimate_tokens
from ._retry import RetryPolicy

if TYPE_CHECKING:
    from ._requester import Requester

__all__ = ["BatchResults", "open_batch", "run_batch"]


class _LatencyHistogram:
    """Latency quantiles in constant memory and time: counts in log-spaced buckets.

    Bucket ``i`` holds latencies in ``[MIN * GROWTH**i, MIN * GROWTH**(i + 1))``, so a
    quantile is off by at most the bucket's width (5 %). Adding is one ``log``; a
    quantile walks at most a few hundred counts, whatever the number of samples.
    """

    MIN = 1e-4
    GROWTH = 1.05
    BUCKETS = 400  # up to about 30 hours

    def __init__(self) -> None:
        self.counts = [0] * self.BUCKETS
        self.total = 0
        self._log_growth = math.log(self.GROWTH)

    def add(self, seconds: float) -> None:
        if seconds <= self.MIN:
            index = 0
        else:
            index = min(self.BUCKETS - 1, int(math.log(seconds / self.MIN) / self._log_growth))
        self.counts[index] += 1
        self.total += 1

    def quantiles(self, *qs: float) -> list[float | None]:
        if not self.total:
            return [None] * len(qs)
        targets = [max(1, math.ceil(q * self.total)) for q in qs]
        out: list[float | None] = [None] * len(qs)
        seen = 0
        for index, count in enumerate(self.counts):
            if not count:
                continue
            seen += count
            for k, target in enumerate(targets):
                if out[k] is None and seen >= target:
                    # The bucket's geometric middle.
                    out[k] = self.MIN * self.GROWTH ** (index + 0.5)
            if all(value is not None for value in out):
                break
        return out


class _ItemPacer:
    """One request's view of the batch's pacing: waits for the budgets before each
    attempt and records what the attempts and responses were (the result's fields)."""

    __slots__ = (
        "_engine",
        "_pass",
        "_sent",
        "attempt_started_at",
        "attempts",
        "rate_limited",
        "request_id",
        "started_at",
        "status_code",
        "tokens",
    )

    def __init__(self, engine: _Engine, tokens: int) -> None:
        self._engine = engine
        self.tokens = tokens
        self.attempts = 0
        self.rate_limited = 0
        self.started_at: float | None = None
        self.attempt_started_at = 0.0
        self.status_code: int | None = None
        self.request_id: str | None = None
        self._pass = BudgetPass(engine.budgets, tokens)
        self._sent: Sent = (0.0, 0.0, 0.0, 0.0)

    async def before_attempt(self, request: httpx.Request) -> None:
        await self._pass.wait()

    def still_clear(self, request: httpx.Request) -> bool:
        sent = self._pass.go()
        if sent is None:
            return False  # the budgets look spent after all: wait for them again
        self._sent = sent
        engine = self._engine
        self.attempts += 1
        self.attempt_started_at = now = sent[2]
        if self.started_at is None:
            self.started_at = now
        else:
            engine.retries += 1
            engine.changed()
        return True

    def abandon(self, request: httpx.Request) -> None:
        self._pass.abandon()

    def after_attempt(self, request: httpx.Request) -> None:
        self._engine.budgets.unanswered(self._sent)

    def after_response(self, response: httpx.Response) -> None:
        engine = self._engine
        self.status_code = status = response.status_code
        self.request_id = response.headers.get("x-request-id")
        engine.budgets.observe(response, self._sent)
        if status == 429:
            self.rate_limited += 1
            engine.rate_limited += 1
            # A refused request consumed none of the tokens it was charged for.
            engine.budgets.refund_tokens(self.tokens)
            engine.changed()


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def _split_item(item: object) -> tuple[str | None, Mapping[str, Any], str]:
    """``body``, ``(custom_id, body)`` or ``(custom_id, body, url)`` ->
    ``(custom_id, body, url)``, checked (the url defaults to chat completions)."""
    custom_id: str | None = None
    body = item
    url = DEFAULT_URL
    if isinstance(item, tuple):
        if len(item) not in (2, 3):
            raise TypeError(
                f"a batch item must be a body dict, a (custom_id, body) pair or a "
                f"(custom_id, body, url) triple, got a tuple of {len(item)}"
            )
        given, body = item[0], item[1]
        if len(item) == 3:
            url = item[2]
        if not isinstance(given, str):
            raise TypeError(f"custom_id must be a string, got {type(given).__name__}")
        custom_id = given
    if not isinstance(body, Mapping):
        raise TypeError(
            f"a batch item must be a body dict like {{'model': ..., 'messages': [...]}} "
            f"or a (custom_id, body) pair, got {type(body).__name__}"
        )
    return custom_id, body, url


def _checked_body(body: Mapping[str, Any]) -> dict[str, Any]:
    params = {k: v for k, v in body.items() if k not in ("model", "messages")}
    stream = params.get("stream", False)
    if not isinstance(stream, bool):
        raise TypeError(f"stream must be true or false, got {stream!r}")
    if "model" not in body:
        raise ValueError("the body has no 'model'")
    return build_body(body.get("model"), body.get("messages"), params)


@attrs.define(eq=False)
class _Engine:
    requester: Requester
    requests: Iterable[Any] | AsyncIterable[Any]
    max_concurrent: int
    window: int
    ordered: bool
    stop_on_error: bool
    timeout: Timeout
    retry: RetryPolicy
    budgets: Budgets
    progress_interval: float
    total: int | None
    progress: AsyncValue[BatchProgress] = attrs.field(init=False)
    failure: BatchResult | None = None
    input_error: Exception | None = None
    # counters
    done: int = 0
    succeeded: int = 0
    failed: int = 0
    in_flight: int = 0
    queued: int = 0
    retries: int = 0
    rate_limited: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    started_at: float = 0.0
    _latencies: _LatencyHistogram = attrs.field(factory=_LatencyHistogram)
    _dirty: trio.Event = attrs.field(factory=trio.Event)
    _pending: dict[int, BatchResult] = attrs.field(factory=dict)
    _next_index: int = 0
    _work_scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    _window_sem: trio.Semaphore = attrs.field(init=False)
    _result_send: trio.MemorySendChannel[BatchResult] = attrs.field(init=False)
    result_receive: trio.MemoryReceiveChannel[BatchResult] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._window_sem = trio.Semaphore(self.window)
        # Unbounded in type only: the window tokens bound what it can hold, and a
        # send that never blocks keeps the order of ordered mode trivially right.
        self._result_send, self.result_receive = trio.open_memory_channel[BatchResult](math.inf)
        self.progress = AsyncValue(BatchProgress(total=self.total))

    # -- progress -------------------------------------------------------------------

    def changed(self) -> None:
        if not self._dirty.is_set():
            self._dirty.set()

    def snapshot(self) -> BatchProgress:
        elapsed = max(0.0, trio.current_time() - self.started_at)
        p50, p95, p99 = self._latencies.quantiles(0.5, 0.95, 0.99)
        return BatchProgress(
            total=self.total,
            done=self.done,
            succeeded=self.succeeded,
            failed=self.failed,
            in_flight=self.in_flight,
            queued=self.queued,
            retries=self.retries,
            rate_limited=self.rate_limited,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            requests_per_second=self.done / elapsed if elapsed > 0 else 0.0,
            latency_p50=p50,
            latency_p95=p95,
            latency_p99=p99,
            elapsed=elapsed,
        )

    async def _publish_progress(self) -> None:
        # Publishing on every result would cost a snapshot per result; at most once per
        # interval keeps the hot path to setting a flag, and costs nothing when idle.
        while True:
            await self._dirty.wait()
            await trio.sleep(self.progress_interval)
            self._dirty = trio.Event()
            self.progress.value = self.snapshot()

    # -- the engine -----------------------------------------------------------------

    async def run(self) -> None:
        self.started_at = trio.current_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._publish_progress)
            work_send, work_receive = trio.open_memory_channel[tuple[int, Any]](0)
            with self._work_scope:
                async with trio.open_nursery() as crew:
                    crew.start_soon(self._produce, work_send)
                    async with work_receive:
                        for _ in range(self.max_concurrent):
                            crew.start_soon(self._work, work_receive.clone())
            self._finish()
            nursery.cancel_scope.cancel()

    def _finish(self) -> None:
        # After a stop, ordered mode still hands over what finished, skipping the gaps.
        for index in sorted(self._pending):
            self._result_send.send_nowait(self._pending.pop(index))
        self._result_send.close()
        self.progress.value = self.snapshot()

    async def _produce(self, send: trio.MemorySendChannel[tuple[int, Any]]) -> None:
        async with send:
            if isinstance(self.requests, AsyncIterable):
                await self._produce_async(aiter(self.requests), send)
            else:
                await self._produce_sync(iter(self.requests), send)

    async def _produce_sync(
        self, items: Iterator[Any], send: trio.MemorySendChannel[tuple[int, Any]]
    ) -> None:
        index = 0
        while True:
            await self._window_sem.acquire()
            try:
                item = next(items)
            except StopIteration:
                self._window_sem.release()
                return
            except Exception as exc:
                self._window_sem.release()
                self.input_error = exc
                return
            index = await self._hand_over(send, index, item)

    async def _produce_async(
        self, items: AsyncIterator[Any], send: trio.MemorySendChannel[tuple[int, Any]]
    ) -> None:
        index = 0
        try:
            while True:
                await self._window_sem.acquire()
                try:
                    item = await items.__anext__()
                except StopAsyncIteration:
                    self._window_sem.release()
                    return
                except Exception as exc:
                    self._window_sem.release()
                    self.input_error = exc
                    return
                index = await self._hand_over(send, index, item)
        finally:
            aclose = getattr(items, "aclose", None)
            if aclose is not None:
                with trio.CancelScope(shield=True), trio.move_on_after(1.0):
                    try:
                        await aclose()
                    except Exception:  # the input's own cleanup failing is not ours
                        pass

    async def _hand_over(
        self, send: trio.MemorySendChannel[tuple[int, Any]], index: int, item: Any
    ) -> int:
        self.queued += 1
        self.changed()
        try:
            await send.send((index, item))
        except BaseException:
            self.queued -= 1
            raise
        return index + 1

    async def _work(self, receive: trio.MemoryReceiveChannel[tuple[int, Any]]) -> None:
        async with receive:
            async for index, item in receive:
                self.queued -= 1
                self.in_flight += 1
                self.changed()
                try:
                    result = await self._run_one(index, item)
                finally:
                    self.in_flight -= 1
                self._deliver(result)

    def _deliver(self, result: BatchResult) -> None:
        self.done += 1
        if result.ok:
            self.succeeded += 1
            usage = result.usage
            if usage is not None:
                self.prompt_tokens += usage.prompt_tokens
                self.completion_tokens += usage.completion_tokens
        else:
            self.failed += 1
        if result.attempts:
            self._latencies.add(result.latency)
        self.changed()
        if not self.ordered:
            self._result_send.send_nowait(result)
        else:
            pending = self._pending
            pending[result.index] = result
            while self._next_index in pending:
                self._result_send.send_nowait(pending.pop(self._next_index))
                self._next_index += 1
        if self.stop_on_error and not result.ok and self.failure is None:
            self.failure = result
            self._work_scope.cancel()

    async def _run_one(self, index: int, item: Any) -> BatchResult:
        custom_id: str | None = None
        try:
            custom_id, raw, url = _split_item(item)
            # Any Batch API url: chat, embeddings or responses (see _endpoints).
            endpoint = endpoint_for(url)
            if endpoint.kind == "chat":
                body = _checked_body(raw)
                parse: Any = parse_chat_completion
            else:
                body = dict(raw)
                parse = endpoint.prepare(body)
        except (TypeError, ValueError) as exc:
            return BatchResult(index, custom_id, None, exc, attempts=0, latency=0.0)
        pacer = _ItemPacer(self, estimate_tokens(body, kind=endpoint.kind))
        requester = self.requester
        ttft = tps = None
        try:
            if body.get("stream") and endpoint.kind == "chat":
                completion, ttft, tps = await self._stream_one(body, pacer)
            else:
                request = requester.build_request(endpoint.path, body, pacer=pacer)
                completion = await requester.request_json(
                    request, parse, self.timeout, self.retry, usage_of
                )
        except APIError as error:
            return self._result(index, custom_id, pacer, None, error)
        except (TypeError, ValueError) as error:
            if pacer.attempts:
                raise
            # Raised while encoding the body, before anything was sent: the item's fault.
            return self._result(index, custom_id, pacer, None, error)
        usage = usage_of(completion)
        if usage is not None:
            self.budgets.refund_tokens(pacer.tokens - usage.total_tokens)
        return self._result(index, custom_id, pacer, completion, None, ttft, tps)

    def _result(
        self,
        index: int,
        custom_id: str | None,
        pacer: _ItemPacer,
        completion: ChatCompletion | None,
        error: Exception | None,
        ttft: float | None = None,
        tps: float | None = None,
    ) -> BatchResult:
        started = pacer.started_at
        latency = 0.0 if started is None else trio.current_time() - started
        return BatchResult(
            index,
            custom_id,
            completion,
            error,
            attempts=pacer.attempts,
            latency=latency,
            status_code=pacer.status_code,
            request_id=pacer.request_id,
            rate_limited=pacer.rate_limited,
            time_to_first_token=ttft,
            tokens_per_second=tps,
        )

    async def _stream_one(
        self, body: dict[str, Any], pacer: _ItemPacer
    ) -> tuple[ChatCompletion, float | None, float | None]:
        # The stream layer reads it whole, retries and deadline included; here only the
        # timings are worked out.
        from ._stream import read_stream

        completion, stream = await read_stream(
            self.requester, body, self.timeout, self.retry, pacer
        )
        ttft = tps = None
        first, finished = stream.first_chunk_at, stream.finished_at
        if first is not None:
            ttft = first - pacer.attempt_started_at
            if finished is not None and finished > first:
                usage = completion.usage
                tokens = usage.completion_tokens if usage is not None else stream.content_chunks
                tps = tokens / (finished - first)
        return completion, ttft, tps


class BatchResults:
    """The results of a running batch: ``async for result in results``.

    Each result is handed over once. ``progress`` is a trio-util ``AsyncValue`` of
    :class:`BatchProgress` snapshots (refreshed at most every ``progress_interval``
    seconds while things happen, and once more at the end), so a task can follow the
    batch without polling::

        async for p in results.progress.eventual_values():
            print(f"{p.done}/{p.total} done, p95 {p.latency_p95}")
    """

    def __init__(self, engine: _Engine) -> None:
        self._engine = engine

    @property
    def progress(self) -> AsyncValue[BatchProgress]:
        return self._engine.progress

    @property
    def failure(self) -> BatchResult | None:
        """The failure that stopped the batch (``stop_on_error=True``), else ``None``."""
        return self._engine.failure

    def snapshot(self) -> BatchProgress:
        """A progress snapshot taken now (``progress.value`` may be up to an interval old)."""
        return self._engine.snapshot()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> BatchResult:
        engine = self._engine
        try:
            result = await engine.result_receive.receive()
        except trio.EndOfChannel:
            if engine.input_error is not None:
                error = engine.input_error
                raise BatchError(
                    f"the batch's requests iterable raised {type(error).__name__}: {error}; "
                    f"the {engine.done} requests taken from it before were finished"
                ) from error
            raise StopAsyncIteration from None
        # The caller has it now: its window slot may admit the next request.
        engine._window_sem.release()
        return result


def open_batch(
    requester: Requester,
    requests: Iterable[Any] | AsyncIterable[Any],
    *,
    max_concurrent: int | None = None,
    ordered: bool = False,
    stop_on_error: bool = False,
    rpm: float | None = None,
    tpm: float | None = None,
    timeout: Timeout | float | None = None,
    retry: RetryPolicy | None = None,
    reorder_window: int | None = None,
    follow_rate_limit_headers: bool = True,
    progress_interval: float = 0.1,
) -> AbstractAsyncContextManager[BatchResults]:
    """Run many requests; ``async with`` it and iterate the results as they finish.

    Entering starts the batch (it does not block); the iteration blocks until the next
    result; leaving cancels whatever still runs.

    Args:
        requester: An open client's request path (``client.batch()`` passes it).
        requests: Bodies (dicts as for ``create``: ``{"model", "messages", ...}``; with
            ``"stream": True`` the engine reads the stream whole) or
            ``(custom_id, body)`` pairs, or ``(custom_id, body, url)`` triples whose
            Batch API ``url`` is ``/v1/chat/completions``, ``/v1/embeddings`` or
            ``/v1/responses`` (mixed freely), from an iterable or an async iterable,
            pulled only as capacity frees up.
        max_concurrent: Requests in progress at once (default: the client's; the
            client's limiter still applies on top).
        ordered: Yield results in input order (through a bounded reorder buffer).
        stop_on_error: Stop at the first final failure (see the module docs).
        rpm: A requests-per-minute budget (starting with one second's worth).
        tpm: A tokens-per-minute budget: each request's cost estimated from its text
            and ``max_tokens``, then corrected by its ``usage``.
        timeout: The :class:`~trioclient.Timeout` of each request (``None``: the
            client's).
        retry: The :class:`~trioclient.RetryPolicy` (``None``: the client's).
        reorder_window: In ordered mode, how many finished results may wait for an
            earlier one before admission stops (default ``4 * max_concurrent``).
        follow_rate_limit_headers: Pace from the server's ``x-ratelimit-*`` headers.
        progress_interval: Seconds between progress snapshots while things happen.

    Raises:
        ValueError, TypeError: bad options (at once, before anything runs).
        BatchError: from the iteration, when ``requests`` raised or the engine failed.
    """
    if isinstance(requests, str | bytes | Mapping) or not isinstance(
        requests, Iterable | AsyncIterable
    ):
        raise TypeError(
            "requests must be an iterable or async iterable of bodies or "
            f"(custom_id, body) pairs, got {type(requests).__name__}"
        )
    if max_concurrent is None:
        limiter = requester.limiter
        if limiter.total_tokens == math.inf:
            # One worker per token: an unbounded limiter would mean unbounded workers.
            raise ValueError(
                "the client's limiter is unbounded: pass batch(max_concurrent=N) to say "
                "how many requests this batch may have in progress"
            )
        concurrency = int(limiter.total_tokens)
    else:
        concurrency = _positive_int("max_concurrent", max_concurrent)
    window = _positive_int("reorder_window", reorder_window) if reorder_window is not None else None
    if ordered:
        slack = 4 * concurrency if window is None else window
    else:
        slack = concurrency
    if not isinstance(progress_interval, int | float) or not progress_interval > 0:
        raise ValueError(f"progress_interval must be a positive number, got {progress_interval!r}")
    if retry is not None and not isinstance(retry, RetryPolicy):
        raise TypeError(f"retry must be a RetryPolicy, got {type(retry).__name__}")
    total: int | None = None
    if hasattr(requests, "__len__"):
        try:
            total = len(requests)  # type: ignore[arg-type]
        except TypeError:
            total = None
    engine = _Engine(
        requester=requester,
        requests=requests,
        max_concurrent=concurrency,
        window=concurrency + slack,
        ordered=bool(ordered),
        stop_on_error=bool(stop_on_error),
        timeout=requester.timeout if timeout is None else Timeout.coerce(timeout),
        retry=requester.retry if retry is None else retry,
        budgets=Budgets(rpm=rpm, tpm=tpm, follow_headers=follow_rate_limit_headers),
        progress_interval=float(progress_interval),
        total=total,
    )
    return _running(engine)


@asynccontextmanager
async def _running(engine: _Engine) -> AsyncIterator[BatchResults]:
    # The engine's nursery lives exactly as long as the caller's `async with` body; the
    # body's own exception comes out as itself (see _background).
    engine.requester.check_open()

    def failed(errors: BaseExceptionGroup[BaseException]) -> BatchError:
        return BatchError(
            f"the batch engine failed: {describe_leaves(errors)} (see __cause__ for every error)"
        )

    async with open_background(failed) as nursery:
        nursery.start_soon(engine.run)
        yield BatchResults(engine)


async def run_batch(
    requester: Requester, requests: Iterable[Any] | AsyncIterable[Any], **options: Any
) -> list[BatchResult]:
    """Run a batch to its end and return every result in input order (for small jobs:
    the list holds them all).

    Takes the options of :func:`open_batch` except ``ordered``.

    Raises:
        BatchError: ``stop_on_error=True`` and a request failed (``.failure``, with
            ``.results`` holding those that finished), or ``requests`` raised.
    """
    if "ordered" in options:
        raise TypeError("run_batch always returns results in input order; drop 'ordered'")
    results: list[BatchResult] = []
    async with open_batch(requester, requests, **options) as stream:
        async for result in stream:
            results.append(result)
    results.sort(key=lambda r: r.index)
    if stream.failure is not None:
        failure = stream.failure
        raise BatchError(
            f"request {failure.index}"
            + (f" ({failure.custom_id})" if failure.custom_id else "")
            + f" failed and stop_on_error=True stopped the batch: {failure.error}",
            failure=failure,
            results=results,
        )
    return results
