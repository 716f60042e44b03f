"""``client.embeddings``: vectors for text (``POST /embeddings``).

One call embeds one input or a list of them (strings, or token ids): the answer holds
one :class:`Embedding` per input, in input order by ``index``.

**Base64 on the wire.** When the caller names no ``encoding_format``, trioclient asks
for ``"base64"`` and hands back floats anyway, as the openai SDK does: the vector
travels as its raw little-endian float32 bytes (a third of the JSON text of the same
floats, and no float parsing), and :func:`decode_base64_embedding` turns it into a list
of Python floats in C (``binascii`` then ``array.array('f')``), with no Python work per
float. Whatever the format, ``Embedding.embedding`` is a ``list[float]``: a server that
ignores the request and answers floats is read the same way, and an explicit
``encoding_format="base64"`` is decoded too (the openai SDK would hand back the
base64 string then; trioclient's answer has one type). The float32 values of a base64
answer are exact; the floats of a ``"float"`` answer are whatever the server printed.

Bad input (an empty list, a list mixing strings and token ids, a ``dimensions`` that
is not a positive whole number) is refused before anything is sent.
"""

from __future__ import annotations

import array
import binascii
import copy
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import attrs
import httpx

from ._config import Timeout
from ._exceptions import APIResponseValidationError
from ._models import Usage
from ._options import UNSET, CallOptions, check_mapping
from ._retry import RetryPolicy

if TYPE_CHECKING:
    from ._requester import Requester

__all__ = [
    "CreateEmbeddingResponse",
    "Embedding",
    "Embeddings",
    "build_embedding_body",
    "decode_base64_embedding",
    "parse_embedding_response",
]

#: What ``input=`` takes: a string, a list of strings, a list of token ids, or a list of
#: lists of token ids.
EmbeddingInput = str | Sequence[str] | Sequence[int] | Sequence[Sequence[int]]

_BIG_ENDIAN = sys.byteorder == "big"


def _invalid(message: str) -> APIResponseValidationError:
    return APIResponseValidationError(f"invalid response: {message}")


def decode_base64_embedding(text: str, where: str = "embedding") -> list[float]:
    """The floats of a base64 embedding: little-endian float32, as OpenAI sends them.

    ``binascii`` decodes strictly (a character outside the alphabet is an error, not
    skipped) and ``array.array('f').frombytes`` reads the values in C; on a big-endian
    machine the bytes are swapped first. Raises
    :class:`~trioclient.APIResponseValidationError` for text that is not base64 or not
    a whole number of float32 values.
    """
    try:
        raw = binascii.a2b_base64(text, strict_mode=True)
    except (binascii.Error, ValueError) as exc:
        raise _invalid(f"{where}: not valid base64 ({exc})") from None
    if len(raw) % 4:
        raise _invalid(f"{where}: {len(raw)} bytes is not a whole number of float32 values")
    values = array.array("f")
    values.frombytes(raw)
    if _BIG_ENDIAN:
        values.byteswap()
    return values.tolist()


@attrs.frozen
class Embedding:
    """One input's vector.

    Attributes:
        index: The position of its input in ``input=``.
        embedding: The vector, as floats (decoded if it came as base64).
    """

    index: int
    embedding: list[float] = attrs.field(repr=lambda v: f"<{len(v)} floats>")

    def __len__(self) -> int:
        return len(self.embedding)


@attrs.frozen
class CreateEmbeddingResponse:
    """The answer of ``client.embeddings.create()``.

    Attributes:
        data: One :class:`Embedding` per input, as the server listed them.
        model: The model that made them.
        usage: Token counts (``prompt_tokens``, ``total_tokens``), if the server says.
    """

    data: tuple[Embedding, ...]
    model: str
    usage: Usage | None = None
    raw: dict[str, Any] = attrs.field(factory=dict, repr=False, eq=False)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object as the server sent it (base64 vectors stay base64), as a
        deep copy: what a batch output line holds."""
        return copy.deepcopy(self.raw)

    @property
    def vectors(self) -> list[list[float]]:
        """The vectors in input order (by ``index``), without the wrappers."""
        return [item.embedding for item in sorted(self.data, key=lambda item: item.index)]


def parse_embedding_response(data: Any, expected: int | None = None) -> CreateEmbeddingResponse:
    """The JSON of an embeddings answer, checked: every item an object with an integer
    ``index`` and an ``embedding`` that is a list of numbers or a base64 string.

    With ``expected`` (how many inputs were sent), the answer must hold exactly one
    embedding per input, indexes ``0 .. expected-1``: an answer that drops or repeats
    one would otherwise pair vectors with the wrong texts, silently.
    """
    if type(data) is not dict:
        raise _invalid(f"expected an embeddings object, got {type(data).__name__}")
    if "error" in data and "data" not in data:
        raise _invalid(f"a 200 carrying an error: {str(data['error'])[:200]!r}")
    items = data.get("data")
    if type(items) is not list:
        raise _invalid("expected an object with a 'data' list of embeddings")
    embeddings = []
    for i, item in enumerate(items):
        where = f"data[{i}]"
        if type(item) is not dict:
            raise _invalid(f"{where}: expected an object, got {type(item).__name__}")
        index = item.get("index", i)
        if type(index) is not int:
            raise _invalid(f"{where}.index: expected an integer, got {type(index).__name__}")
        vector = item.get("embedding")
        if type(vector) is str:
            floats = decode_base64_embedding(vector, f"{where}.embedding")
        elif type(vector) is list:
            # The values are floats as json read them; checking each one would cost a
            # Python step per float, so only the first is looked at.
            if vector and type(vector[0]) not in (float, int):
                raise _invalid(
                    f"{where}.embedding: expected numbers, got {type(vector[0]).__name__}"
                )
            floats = vector
        else:
            raise _invalid(
                f"{where}.embedding: expected a list of floats or a base64 string, "
                f"got {type(vector).__name__}"
            )
        embeddings.append(Embedding(index, floats))
    if expected is not None:
        indexes = sorted(item.index for item in embeddings)
        if indexes != list(range(expected)):
            raise _invalid(
                f"{expected} inputs were sent but the answer holds {len(embeddings)} "
                f"embeddings with indexes {indexes[:10]}{'...' if len(indexes) > 10 else ''}"
            )
    model = data.get("model")
    usage = data.get("usage")
    return CreateEmbeddingResponse(
        tuple(embeddings),
        model if isinstance(model, str) else "",
        Usage.from_dict(usage) if usage is not None else None,
        data,
    )


def input_count(value: object) -> int:
    """How many embeddings ``input=`` asks for, or a clear error for input no server
    would take (an empty string or list, a list mixing kinds, a bool as a token id)."""
    if isinstance(value, str):
        if not value:
            raise ValueError("input is an empty string: there is nothing to embed")
        return 1
    if isinstance(value, bytes | Mapping) or not isinstance(value, Sequence):
        raise TypeError(
            "input must be a string, a list of strings, a list of token ids or a list of "
            f"lists of token ids, got {type(value).__name__}"
        )
    if not value:
        raise ValueError("input is an empty list: there is nothing to embed")
    first = value[0]
    if isinstance(first, str):
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise TypeError(
                    f"input[{i}] is a {type(item).__name__}: input[0] is a string, so every item must be one"
                )
            if not item:
                raise ValueError(f"input[{i}] is an empty string: there is nothing to embed")
        return len(value)
    if _is_token(first):
        for i, item in enumerate(value):
            if not _is_token(item):
                raise TypeError(
                    f"input[{i}] is {item!r}: input[0] is a token id, so every item must be a whole number >= 0"
                )
        return 1
    for i, item in enumerate(value):
        if isinstance(item, str | bytes | Mapping) or not isinstance(item, Sequence):
            raise TypeError(
                f"input[{i}] is a {type(item).__name__}: expected a string, a token id "
                "(int) or a list of token ids"
            )
        if not item:
            raise ValueError(f"input[{i}] is an empty list of token ids")
        for j, token in enumerate(item):
            if not _is_token(token):
                raise TypeError(f"input[{i}][{j}] is {token!r}: token ids are whole numbers >= 0")
    return len(value)


def _is_token(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def check_embedding_body(body: Mapping[str, Any]) -> int:
    """Check a whole embeddings body as written (a batch line's): a model, an input, a
    valid ``dimensions`` and ``encoding_format`` if present. Returns the input count."""
    if "model" not in body:
        raise ValueError("the body has no 'model'")
    if "input" not in body:
        raise ValueError("the body has no 'input'")
    _, count = build_embedding_body(
        body["model"], body["input"], body.get("dimensions"), body.get("encoding_format")
    )
    return count


def build_embedding_body(
    model: object,
    input: object,
    dimensions: object = None,
    encoding_format: object = None,
    params: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Any], int]:
    """The JSON body of an embeddings request, checked, and how many inputs it holds.

    ``encoding_format=None`` asks for base64 (see the module docstring).
    """
    if not isinstance(model, str) or not model:
        raise ValueError(f"model must be a non-empty string, got {model!r}")
    count = input_count(input)
    sent = input if isinstance(input, str) else list(input)  # type: ignore[call-overload]
    body: dict[str, Any] = {"model": model, "input": sent}
    if dimensions is not None:
        if isinstance(dimensions, bool) or not isinstance(dimensions, int) or dimensions < 1:
            raise ValueError(f"dimensions must be a whole number >= 1, got {dimensions!r}")
        body["dimensions"] = dimensions
    if encoding_format is None:
        encoding_format = "base64"
    elif encoding_format not in ("float", "base64"):
        raise ValueError(f"encoding_format must be 'float' or 'base64', got {encoding_format!r}")
    body["encoding_format"] = encoding_format
    if params:
        body.update(params)
    return body, count


def _usage(result: CreateEmbeddingResponse) -> Usage | None:
    return result.usage


class Embeddings:
    """``client.embeddings``: ``create()``, through the same request path as every call
    (limiter, 429 gate, deadlines, retries, statistics, the client's options)."""

    def __init__(self, requester: Requester) -> None:
        self._requester = requester

    async def create(
        self,
        *,
        model: str,
        input: EmbeddingInput,
        dimensions: int | None = None,
        encoding_format: Literal["float", "base64"] | None = None,
        timeout: Timeout | float | None = UNSET,
        retry: RetryPolicy | None = None,
        max_retries: int | None = None,
        extra_headers: Mapping[str, str] | None = None,
        extra_query: Mapping[str, Any] | None = None,
        extra_body: Mapping[str, Any] | None = None,
        **params: Any,
    ) -> CreateEmbeddingResponse:
        """Embed ``input``: one vector per string (or per list of token ids).

        Args:
            model: The embedding model.
            input: A string, a list of strings, a list of token ids, or a list of
                lists of token ids.
            dimensions: Shorten the vectors to this length (models that support it).
            encoding_format: ``"float"`` or ``"base64"`` on the wire; by default
                base64. The answer holds floats either way.
            timeout, retry, max_retries, extra_headers, extra_query, extra_body: The
                request options, as in ``chat.completions.create``.
            params: Any other parameter (``user``...) passes through untouched.

        Raises:
            APIStatusError: the server refused (after retries, where retryable).
            APIConnectionError: no answer could be had (after retries).
            APIResponseValidationError: the answer is not one embedding per input.
            ValueError, TypeError: bad arguments, before anything is sent.
        """
        requester = self._requester
        requester.check_open()
        body, count = build_embedding_body(model, input, dimensions, encoding_format, params)
        if extra_body is not None:
            check_mapping("extra_body", extra_body)
            body.update(extra_body)
        call = CallOptions(requester, timeout, retry, max_retries, extra_headers, extra_query)
        request = requester.build_request(
            "embeddings", body, extra_headers=call.extra_headers, extra_query=call.extra_query
        )

        def parse(response: httpx.Response, data: Any) -> CreateEmbeddingResponse:
            return parse_embedding_response(data, count)

        return await requester.request_json(request, parse, call.timeout, call.retry, _usage)
