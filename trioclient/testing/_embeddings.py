"""`POST /v1/embeddings`: deterministic vectors from a hash of each input.

A vector is the SHAKE-256 stream of its input read as signed 32-bit numbers, scaled
and normalised to length 1 (as OpenAI's are): the same input always gets the same
vector, different inputs get unrelated ones, and `dimensions=d` is the normalised
first `d` values of the full vector (as a shortened OpenAI embedding is). Vectors are
sent as JSON floats or, with `encoding_format="base64"`, as little-endian float32
bytes in base64. Each rendered vector is cached, so a load test measures the client,
not this hashing.
"""

from __future__ import annotations

import array
import base64
import functools
import hashlib
import json
import math
import sys
from typing import Any

import attrs

from . import _answers
from ._admission import Admitted, admit, bad_type, parse_model_input_body, send_json
from ._chat import ChatEndpoint
from ._config import ServerConfig
from ._errors import json_type_name
from ._http import Request, Wire
from ._render import json_dumps
from ._validate import BadRequest

__all__ = ["DEFAULT_DIMENSIONS", "EmbeddingsEndpoint", "embedding_vector"]

#: The length of a vector when the request names no `dimensions` (text-embedding-3-small's).
DEFAULT_DIMENSIONS = 1536
_MAX_DIMENSIONS = 8192
_MAX_INPUTS = 2048


@functools.lru_cache(maxsize=8192)
def _float32_bytes(key: str, dimensions: int) -> bytes:
    raw = hashlib.shake_256(key.encode()).digest(4 * dimensions)
    ints = array.array("i")
    ints.frombytes(raw)
    if sys.byteorder == "big":
        ints.byteswap()
    norm = math.sqrt(math.fsum(float(v) * v for v in ints)) or 1.0
    values = array.array("f", [v / norm for v in ints])
    if sys.byteorder == "big":
        values.byteswap()
    return values.tobytes()


def embedding_vector(item: str | list[int], dimensions: int = DEFAULT_DIMENSIONS) -> list[float]:
    """The vector the server answers for one input (for tests that check values)."""
    values = array.array("f")
    values.frombytes(_float32_bytes(_key(item), dimensions))
    if sys.byteorder == "big":
        values.byteswap()
    return values.tolist()


def _key(item: str | list[int]) -> str:
    return item if isinstance(item, str) else json.dumps(item)


@functools.lru_cache(maxsize=8192)
def _rendered(key: str, dimensions: int, as_base64: bool) -> bytes:
    """The JSON text of one vector (a base64 string or a float list)."""
    raw = _float32_bytes(key, dimensions)
    if as_base64:
        return b'"' + base64.b64encode(raw) + b'"'
    values = array.array("f")
    values.frombytes(raw)
    if sys.byteorder == "big":
        values.byteswap()
    return json_dumps(values.tolist())


def _inputs(value: object) -> list[str | list[int]]:
    """The request's inputs, one per vector (raises `BadRequest` as the API words it)."""
    if isinstance(value, str):
        if not value:
            raise BadRequest("'$.input' is invalid. Please check the API reference.", "input")
        return [value]
    if not isinstance(value, list):
        raise bad_type("input", "a string or an array", value)
    if not value:
        raise BadRequest("'$.input' is invalid: empty array.", "input", "empty_array")
    if len(value) > _MAX_INPUTS:
        raise BadRequest(
            f"'$.input' is invalid: at most {_MAX_INPUTS} inputs per request.", "input"
        )
    if all(isinstance(t, int) and not isinstance(t, bool) for t in value):
        return [value]
    items: list[str | list[int]] = []
    for i, item in enumerate(value):
        if isinstance(item, str) and item:
            items.append(item)
        elif (
            isinstance(item, list)
            and item
            and all(isinstance(t, int) and not isinstance(t, bool) for t in item)
        ):
            items.append(item)
        else:
            raise BadRequest(
                f"'$.input[{i}]' is invalid: expected a non-empty string or array of "
                f"token ids, got {json_type_name(item)}.",
                "input",
            )
    return items


def parse_embeddings_body(raw: bytes) -> dict[str, Any]:
    body = parse_model_input_body(raw)
    body["_inputs"] = _inputs(body["input"])
    fmt = body.get("encoding_format", "float")
    if fmt not in ("float", "base64"):
        raise BadRequest(
            f"Invalid value: {json.dumps(fmt)}. Supported values are: 'float' and 'base64'.",
            "encoding_format",
            "invalid_value",
        )
    dimensions = body.get("dimensions")
    if dimensions is not None and (
        not isinstance(dimensions, int)
        or isinstance(dimensions, bool)
        or not 1 <= dimensions <= _MAX_DIMENSIONS
    ):
        raise BadRequest(
            f"Invalid value for 'dimensions': expected an integer in 1..{_MAX_DIMENSIONS}.",
            "dimensions",
            "invalid_value",
        )
    return body


def _tokens(item: str | list[int]) -> int:
    return _answers.count_tokens(item) if isinstance(item, str) else len(item)


def _cost(body: dict[str, Any]) -> int:
    return sum(_tokens(item) for item in body["_inputs"])


@attrs.define(eq=False)
class EmbeddingsEndpoint:
    """`POST /v1/embeddings`, checked, rate-limited and faulted as chat is."""

    chat: ChatEndpoint

    async def answer(self, wire: Wire, request: Request, config: ServerConfig) -> bool:
        """Answer one embeddings request; False means the connection must end."""
        admitted = await admit(
            self.chat, wire, request, config, parse_embeddings_body, lambda body, sim: _cost(body), stream=lambda b: False
        )
        if not isinstance(admitted, Admitted):
            return admitted
        body = admitted.body
        inputs: list[str | list[int]] = body["_inputs"]
        dimensions = body.get("dimensions") or DEFAULT_DIMENSIONS
        as_base64 = body.get("encoding_format") == "base64"
        tokens = _cost(body)
        self.chat.counters.prompt_tokens += tokens
        # One latency for the whole answer: `ttft` (an embedding has no tokens to pace).
        ttft = (admitted.sim.ttft or config.ttft).sample(self.chat.rng)
        await self.chat.pacer.wait_until(admitted.start + ttft)
        parts = [
            b'{"object":"embedding","index":%d,"embedding":%s}'
            % (i, _rendered(_key(item), dimensions, as_base64))
            for i, item in enumerate(inputs)
        ]
        payload = (
            b'{"object":"list","data":['
            + b",".join(parts)
            + b'],"model":'
            + json_dumps(body["model"])
            + b',"usage":{"prompt_tokens":%d,"total_tokens":%d}}' % (tokens, tokens)
        )
        return await send_json(
            wire,
            config.fault_params,
            payload,
            admitted.fault,
            admitted.rate_headers,
            admitted.request_id,
        )
