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


def _c_encoder() -> Callable[[Any, int], Sequence[str]] | None:
    """The C encoder `_ENCODER` builds on each call, built once here, or ``None``
    where the C accelerator is missing.

    ``JSONEncoder.encode`` makes a new one for every body (with a fresh dict for its
    check for circular references), a third of the cost of encoding a small body.
    This one skips that check: a body that refers to itself makes it fail (with a
    RecursionError), and `encode_body` then encodes again with `_ENCODER`, which names
    the fault. The arguments are the ones ``JSONEncoder.iterencode`` passes.
    """
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # pragma: no cover - CPython always has it
        return None
    encoder: Callable[[Any, int], Sequence[str]] = make(
        None,  # no markers: no check for circular references
        jsonable,
        json.encoder.encode_basestring,  # ensure_ascii=False
        None,  # indent
        ":",
        ",",
        False,  # sort_keys
        False,  # skipkeys
        True,  # allow_nan, as json.dumps
    )
    return encoder


_FAST_ENCODER = _c_encoder()


def encode_body(body: Mapping[str, Any]) -> bytes:
    """The body as compact UTF-8 JSON; a clear ``TypeError`` naming what cannot be sent."""
    if _FAST_ENCODER is not None:
        try:
            return "".join(_FAST_ENCODER(body, 0)).encode()
        except Exception:  # the full encoder below says what is wrong
            pass
    try:
        return _ENCODER.encode(body).encode()
    except (TypeError, ValueError, RecursionError) as exc:
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
