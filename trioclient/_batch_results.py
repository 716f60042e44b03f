"""What a batch gives back: one :class:`BatchResult` per request, :class:`BatchProgress`
snapshots while it runs, and :class:`BatchError` when it cannot run to its end.

Plain frozen values, kept apart from the engine (:mod:`trioclient._batch`) that makes
them: the JSONL runner, the CLI and user code read them without loading the engine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from ._embeddings import CreateEmbeddingResponse
    from ._models import ChatCompletion, Usage
    from ._responses import ResponseObject

__all__ = ["BatchError", "BatchProgress", "BatchResult"]


@attrs.frozen
class BatchResult:
    """The outcome of one request of a batch.

    Attributes:
        index: Its position in the input (0-based).
        custom_id: The id given with a ``(custom_id, body)`` pair, else ``None``.
        response: The answer, or ``None``: a :class:`~trioclient.ChatCompletion` (for
            a stream, assembled from its chunks), a
            :class:`~trioclient.CreateEmbeddingResponse` or a
            :class:`~trioclient.ResponseObject`, as the item's url says.
        error: Why there is no response: a trioclient :class:`~trioclient.APIError`, or
            the ``ValueError``/``TypeError`` that rejected the body before sending.
        attempts: Attempts put on the wire (0 when the body was rejected).
        latency: Seconds (trio clock) from the start of the first attempt to the end,
            retries and their waits included; pacing waits before the first excluded.
        status_code: The HTTP status of the last response, if one arrived.
        request_id: The server's ``x-request-id`` of the last response, if any.
        rate_limited: How many of its attempts were answered 429.
        time_to_first_token: For streams, seconds from the successful attempt's start
            to its first chunk.
        tokens_per_second: For streams, completion tokens per second after the first
            chunk (``usage.completion_tokens`` if sent, else content chunks).
    """

    index: int
    custom_id: str | None
    response: ChatCompletion | CreateEmbeddingResponse | ResponseObject | None
    error: Exception | None
    attempts: int
    latency: float
    status_code: int | None = None
    request_id: str | None = None
    rate_limited: int = 0
    time_to_first_token: float | None = None
    tokens_per_second: float | None = None

    @property
    def ok(self) -> bool:
        """Whether this request has a response (and no error)."""
        return self.error is None and self.response is not None

    @property
    def usage(self) -> Usage | None:
        """The response's token usage, if any."""
        from ._endpoints import usage_of

        return usage_of(self.response)


@attrs.frozen
class BatchProgress:
    """A snapshot of a running batch (``results.progress.value``).

    Attributes:
        total: How many requests the input holds, when it has a ``len()``; else ``None``.
        done: Requests finished, either way.
        succeeded: Requests finished with a response.
        failed: Requests finished with an error.
        in_flight: Requests being worked on now (sending, waiting for a budget or a
            retry, reading).
        queued: Requests taken from the input but not yet started.
        retries: Attempts that were retries.
        rate_limited: Attempts answered 429.
        prompt_tokens: ``usage.prompt_tokens`` summed over responses.
        completion_tokens: ``usage.completion_tokens`` summed over responses.
        requests_per_second: ``done / elapsed``.
        latency_p50, latency_p95, latency_p99: Latency quantiles of the finished
            requests, in seconds (within 5 %: read from a log-scale histogram).
        elapsed: Seconds since the batch started.
    """

    total: int | None
    done: int = 0
    succeeded: int = 0
    failed: int = 0
    in_flight: int = 0
    queued: int = 0
    retries: int = 0
    rate_limited: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    requests_per_second: float = 0.0
    latency_p50: float | None = None
    latency_p95: float | None = None
    latency_p99: float | None = None
    elapsed: float = 0.0

    @property
    def remaining(self) -> int | None:
        """Requests not yet finished, when the total is known."""
        return None if self.total is None else self.total - self.done


class BatchError(Exception):
    """A batch could not run to its end.

    Raised when the ``requests`` iterable itself raised (``__cause__`` is its error),
    when the engine failed (``__cause__`` is the exception group), and by
    :func:`run_batch` when ``stop_on_error=True`` stopped the batch.

    Attributes:
        failure: The result that stopped the batch (``stop_on_error``), else ``None``.
        results: The results delivered before the batch stopped (for
            :func:`run_batch`, in input order).
    """

    def __init__(
        self,
        message: str,
        *,
        failure: BatchResult | None = None,
        results: list[BatchResult] | None = None,
    ) -> None:
        super().__init__(message)
        self.failure = failure
        self.results = results if results is not None else []
