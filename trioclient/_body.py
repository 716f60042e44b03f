"""Request bodies: checked and encoded once, before anything is sent.

A leaf: it knows JSON and the shape of a chat-completion body, nothing of HTTP, the
client or the jobs built on it. Both the client and the batch engine call it, so a body
is checked by one set of rules whichever way it arrives.

The checks are the ones no server would disagree with (a model name, a non-empty list of
messages that each have a role); everything else passes through untouched, because
providers add parameters faster than a client could list them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

__all__ = ["build_body", "encode_body", "jsonable", "validate_messages"]


def jsonable(value: Any) -> Any:
    """``json.dumps``'s ``default``: what trioclient returned can be sent back.

    A message from an answer (``completion.choices[0].message``, with its tool calls)
    goes back into ``messages`` as it is: models offer ``to_dict()``, other attrs values
    are turned into dicts.
    """
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    if attrs.has(type(value)):
        return attrs.asdict(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# What json.dumps(body, ensure_ascii=False, separators=(",", ":"), default=jsonable)
# does, with its encoder made once instead of on every call (dumps builds a new one
# whenever an option is given).
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=jsonable)


# The C encoder `_ENCODER.encode` builds for every dict it encodes, called directly:
# `encode` wraps it in Python-level set-up (a closure for floats, checks of its
# options) that costs more than building the encoder. A fresh dict for the check for
# circular references each time, as `encode` makes: a shared one would be left holding
# entries by a failed encoding, and shared between threads.
_MAKE_C_ENCODER: Callable[..., Callable[[Any, int], Sequence[str]]] | None = getattr(
    json.encoder, "c_make_encoder", None
)


def encode_body(body: Mapping[str, Any]) -> bytes:
    """The body as compact UTF-8 JSON; a clear ``TypeError`` naming what cannot be sent."""
    try:
        if _MAKE_C_ENCODER is None:  # pragma: no cover - CPython has the C encoder
            text = _ENCODER.encode(body)
        else:
            # The arguments `JSONEncoder.iterencode` passes for `_ENCODER`'s options.
            encoder = _MAKE_C_ENCODER(
                {},  # markers: the check for circular references
                jsonable,  # default
                json.encoder.encode_basestring,  # ensure_ascii=False
                None,  # indent
                ":",  # key separator
                ",",  # item separator
                False,  # sort_keys
                False,  # skipkeys
                True,  # allow_nan, as json.dumps
            )
            text = "".join(encoder(body, 0))
        return text.encode()
    except (TypeError, ValueError) as exc:
        raise TypeError(f"request body is not JSON-serializable: {exc}") from None


def validate_messages(messages: object) -> None:
    """Reject what no server would accept, before anything is sent."""
    # type() before isinstance(): checking against the ABCs costs more than the rest
    # of this function, and nearly every call passes a list of dicts.
    if type(messages) is not list and (
        isinstance(messages, str | bytes | Mapping) or not isinstance(messages, Sequence)
    ):
        raise TypeError(f"messages must be a list of message dicts, got {type(messages).__name__}")
    if not messages:
        raise ValueError("messages is empty: a chat completion needs at least one message")
    for i, message in enumerate(messages):
        if type(message) is dict or isinstance(message, Mapping):
            role = message.get("role")
        elif hasattr(message, "to_dict") and hasattr(message, "role"):
            role = message.role  # a message trioclient returned, sent back as it is
        else:
            raise TypeError(
                f"messages[{i}] must be a dict like {{'role': 'user', 'content': '...'}}, "
                f"got {type(message).__name__}"
            )
        if not isinstance(role, str) or not role:
            raise ValueError(f"messages[{i}] has no 'role' (expected 'system', 'user', ...)")


def build_body(model: object, messages: object, params: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON body of a chat completion, checked: every other parameter passes through."""
    if not isinstance(model, str) or not model:
        raise ValueError(f"model must be a non-empty string, got {model!r}")
    validate_messages(messages)
    body = {"model": model, "messages": list(messages)}  # type: ignore[call-overload]
    body.update(params)
    return body
