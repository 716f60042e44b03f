"""``client.models``: which models the endpoint serves (``GET /models``).

The list is free to ask for on the OpenAI-compatible APIs and needs the key, so it is
also the cheapest way to check that an endpoint is up and accepts the key (the CLI's
``batch`` command does exactly that before it starts).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import attrs
import httpx

from ._exceptions import APIResponseValidationError

if TYPE_CHECKING:
    from ._requester import Requester

__all__ = ["Model", "ModelList", "Models"]


def _invalid(what: str, data: object) -> APIResponseValidationError:
    return APIResponseValidationError(
        f"invalid response: {what}, got {str(data)[:200]!r}", body=data
    )


@attrs.frozen
class Model:
    """One model the endpoint serves.

    Attributes:
        id: The name to pass as ``model=``.
        created: When it was made (Unix seconds), if the server says.
        owned_by: Who publishes it, if the server says.
        data: The whole JSON object, unknown fields included.
    """

    id: str
    created: int | float | None = None
    owned_by: str | None = None
    data: dict[str, Any] = attrs.field(factory=dict, repr=False, eq=False)

    @classmethod
    def from_dict(cls, obj: object) -> Model:
        if not isinstance(obj, dict) or not isinstance(obj.get("id"), str):
            raise _invalid("a model must be an object with a string 'id'", obj)
        created = obj.get("created")
        owned_by = obj.get("owned_by")
        return cls(
            obj["id"],
            created if isinstance(created, int | float) and not isinstance(created, bool) else None,
            owned_by if isinstance(owned_by, str) else None,
            obj,
        )


@attrs.frozen
class ModelList:
    """The answer of ``client.models.list()``: iterate it, or read ``data``."""

    data: tuple[Model, ...]

    def __iter__(self) -> Iterator[Model]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)


def _parse_list(response: httpx.Response, data: Any) -> ModelList:
    items = data.get("data") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise _invalid("expected an object with a 'data' list of models", data)
    return ModelList(tuple(Model.from_dict(item) for item in items))


def _parse_one(response: httpx.Response, data: Any) -> Model:
    return Model.from_dict(data)


class Models:
    """``client.models``: ``list()`` and ``retrieve(id)``, through the same request path
    as every call (limiter, retries, deadlines, the client's options)."""

    def __init__(self, requester: Requester) -> None:
        self._requester = requester

    async def list(self) -> ModelList:
        """The models the endpoint serves."""
        requester = self._requester
        requester.check_open()
        request = requester.build_request("models", method="GET")
        return await requester.request_json(
            request, _parse_list, requester.timeout, requester.retry
        )

    async def retrieve(self, model: str) -> Model:
        """One model by name (``NotFoundError`` if the endpoint does not serve it)."""
        if not isinstance(model, str) or not model:
            raise ValueError(f"model must be a non-empty string, got {model!r}")
        requester = self._requester
        requester.check_open()
        request = requester.build_request(f"models/{quote(model, safe='')}", method="GET")
        return await requester.request_json(
            request, _parse_one, requester.timeout, requester.retry
        )
