"""The Batch API ``url``\\ s trioclient runs, and what each needs from a batch line.

A Batch API line names its endpoint (``"url": "/v1/embeddings"``); the batch engine,
the JSONL runner and the remote runner all ask this module what that means: the path
to POST to, how a body is checked before sending, how a 2xx answer is parsed, and how
many tokens it is charged against a ``tpm`` budget. One table, so a new endpoint is one
entry, not a branch in every job.

A batch body is sent **as written**: unlike ``client.embeddings.create``, no
``encoding_format`` is added, so a line gets the same answer from the live engine and
from the provider's batch service.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import httpx

from ._models import Usage

__all__ = ["DEFAULT_URL", "SUPPORTED_URLS", "Endpoint", "endpoint_for", "usage_of"]

DEFAULT_URL = "/v1/chat/completions"

#: body -> the parse function for its answer (the checks raise ValueError/TypeError).
Prepare = Callable[[dict[str, Any]], Callable[[httpx.Response, Any], Any]]


@attrs.frozen
class Endpoint:
    """One endpoint a batch line may name.

    Attributes:
        url: Its canonical Batch API url (``/v1/embeddings``).
        path: Its path under the client's ``base_url`` (``embeddings``).
        kind: ``"chat"``, ``"embeddings"`` or ``"responses"`` (how tokens are estimated).
        prepare: Checks a body (raising ``ValueError``/``TypeError`` naming what is
            wrong) and returns how to parse its answer.
    """

    url: str
    path: str
    kind: str
    prepare: Prepare


def _prepare_chat(body: dict[str, Any]) -> Callable[[httpx.Response, Any], Any]:
    from ._attempt import parse_chat_completion as parse
    from ._body import build_body

    params = {k: v for k, v in body.items() if k not in ("model", "messages")}
    build_body(body.get("model"), body.get("messages"), params)
    return parse


def _prepare_embeddings(body: dict[str, Any]) -> Callable[[httpx.Response, Any], Any]:
    from ._embeddings import check_embedding_body, parse_embedding_response

    count = check_embedding_body(body)

    def parse(response: httpx.Response, data: Any) -> Any:
        return parse_embedding_response(data, count)

    return parse


def _prepare_responses(body: dict[str, Any]) -> Callable[[httpx.Response, Any], Any]:
    from ._responses import build_response_body, parse_response_object

    if body.get("stream"):
        raise ValueError("stream is not supported for /v1/responses in a batch: drop it")
    params = {k: v for k, v in body.items() if k not in ("model", "input")}
    build_response_body(body.get("model"), body.get("input"), params)
    return parse_response_object


_CHAT = Endpoint("/v1/chat/completions", "chat/completions", "chat", _prepare_chat)
_EMBEDDINGS = Endpoint("/v1/embeddings", "embeddings", "embeddings", _prepare_embeddings)
_RESPONSES = Endpoint("/v1/responses", "responses", "responses", _prepare_responses)

_BY_URL = {
    url: endpoint
    for endpoint in (_CHAT, _EMBEDDINGS, _RESPONSES)
    for url in (endpoint.url, endpoint.url.removeprefix("/v1"))
}

#: Every ``url`` a batch line may name (with or without the ``/v1`` prefix).
SUPPORTED_URLS = frozenset(_BY_URL)


def endpoint_for(url: object) -> Endpoint:
    """The :class:`Endpoint` of a Batch API ``url``, or a ``ValueError`` listing them."""
    endpoint = _BY_URL.get(url) if isinstance(url, str) else None
    if endpoint is None:
        raise ValueError(
            f"url {url!r} is not supported: use /v1/chat/completions, /v1/embeddings or "
            "/v1/responses (the /v1 prefix may be left out)"
        )
    return endpoint


def usage_of(answer: Any) -> Usage | None:
    """The token usage of any endpoint's answer as a :class:`~trioclient.Usage`
    (a Responses answer's input/output tokens as prompt/completion tokens)."""
    usage = getattr(answer, "usage", None)
    if usage is None or isinstance(usage, Usage):
        return usage
    as_usage = getattr(usage, "as_usage", None)
    return as_usage() if callable(as_usage) else None
