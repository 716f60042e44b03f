"""A call's request options, as the openai SDK takes them, resolved against the client's.

Shared by every endpoint's ``create`` (chat, embeddings, responses): ``timeout``,
``retry`` or ``max_retries``, ``extra_headers``, ``extra_query``. ``extra_body`` is
merged by each endpoint into its own body.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

from ._config import Timeout
from ._retry import RetryPolicy

if TYPE_CHECKING:
    from ._requester import Requester

__all__ = ["UNSET", "CallOptions", "check_mapping", "retry_policy"]

#: "Not given", for options where ``None`` means something (``timeout=None``: no deadline).
UNSET: Any = object()


def retry_policy(retry: RetryPolicy | None, max_retries: int | None, default: RetryPolicy) -> RetryPolicy:
    """``retry=`` or the openai SDK's ``max_retries=`` (not both) over ``default``."""
    if retry is not None and max_retries is not None:
        raise ValueError("pass retry or max_retries, not both")
    if retry is not None:
        if not isinstance(retry, RetryPolicy):
            raise TypeError(f"retry must be a RetryPolicy, got {type(retry).__name__}")
        return retry
    if max_retries is not None:
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"max_retries must be a whole number >= 0, got {max_retries!r}")
        return attrs.evolve(default, max_retries=max_retries)
    return default


def check_mapping(name: str, value: object) -> None:
    if value is not None and not isinstance(value, Mapping):
        raise TypeError(f"{name} must be a dict, got {type(value).__name__}")


class CallOptions:
    """One call's request options, resolved against the client's defaults."""

    __slots__ = ("extra_headers", "extra_query", "retry", "timeout")

    def __init__(
        self,
        requester: Requester,
        timeout: Timeout | float | None,
        retry: RetryPolicy | None,
        max_retries: int | None,
        extra_headers: Mapping[str, str] | None,
        extra_query: Mapping[str, Any] | None,
    ) -> None:
        self.timeout = requester.timeout if timeout is UNSET else Timeout.coerce(timeout)
        if retry is None and max_retries is None:
            self.retry = requester.retry
        else:
            self.retry = retry_policy(retry, max_retries, requester.retry)
        check_mapping("extra_headers", extra_headers)
        check_mapping("extra_query", extra_query)
        self.extra_headers = extra_headers
        self.extra_query = extra_query
