"""The chat-completion values: frozen attrs classes built by small explicit parsers.

attrs is not a serialization library, so each class has a ``from_dict`` that says what
the API promises (``choices`` is a list of objects, ``message.content`` is a string or
null...) and raises :class:`~trioclient.APIResponseValidationError` naming the place
that broke the promise. Whatever the server sends that these classes do not name is
kept: every value holds the JSON object it was built from, and ``to_dict()`` gives it
back, so a field a newer API adds is never lost.

The streaming classes (:class:`ChatCompletionChunk` and friends) are built once per
chunk, so their parsers are kept to straight-line code: no reflection, no schema walk.
"""

from __future__ import annotations

import copy
from typing import Any

import attrs

from ._exceptions import APIResponseValidationError

__all__ = [
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatCompletionMessage",
    "Choice",
    "ChoiceDelta",
    "ChoiceDeltaToolCall",
    "ChunkChoice",
    "FunctionCall",
    "ToolCall",
    "Usage",
]

JSONObject = dict[str, Any]


def _fail(where: str, expected: str, value: object) -> APIResponseValidationError:
    got = "null" if value is None else type(value).__name__
    return APIResponseValidationError(f"invalid response: {where}: expected {expected}, got {got}")


def _object(value: object, where: str) -> JSONObject:
    if type(value) is not dict:
        raise _fail(where, "an object", value)
    return value


def _list(value: object, where: str) -> list[Any]:
    if type(value) is not list:
        raise _fail(where, "a list", value)
    return value


def _opt_str(value: object, where: str) -> str | None:
    if value is None or type(value) is str:
        return value
    raise _fail(where, "a string or null", value)


def _int(value: object, where: str, default: int = 0) -> int:
    if value is None:
        return default
    if type(value) is int:
        return value
    raise _fail(where, "an integer", value)


class _Keeps:
    """Mixin: the JSON object a value was built from, given back by ``to_dict()``."""

    __slots__ = ()
    data: JSONObject

    def to_dict(self) -> JSONObject:
        """The whole JSON object this value was parsed from, as a deep copy."""
        return copy.deepcopy(self.data)


@attrs.frozen
class Usage(_Keeps):
    """Token counts of one request (details such as cached tokens stay in ``to_dict()``)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    data: JSONObject = attrs.field(factory=dict, repr=False, eq=False)

    @classmethod
    def from_dict(cls, obj: object, where: str = "usage") -> Usage:
        d = _object(obj, where)
        prompt = _int(d.get("prompt_tokens"), f"{where}.prompt_tokens")
        completion = _int(d.get("completion_tokens"), f"{where}.completion_tokens")
        total = _int(d.get("total_tokens"), f"{where}.total_tokens", prompt + completion)
        return cls(prompt, completion, total, d)


@attrs.frozen
class FunctionCall(_Keeps):
    """The function a tool call names, with its arguments as the JSON text the model wrote."""

    name: str
    arguments: str
    data: JSONObject = attrs.field(factory=dict, repr=False, eq=False)

    @classmethod
    def from_dict(cls, obj: object, where: str) -> FunctionCall:
        d = _object(obj, where)
        name = _opt_str(d.get("name"), f"{where}.name") or ""
        arguments = _opt_str(d.get("arguments"), f"{where}.arguments") or ""
        return cls(name, arguments, d)


@attrs.frozen
class ToolCall(_Keeps):
    """One tool call in an assistant message."""

    id: str
    type: str
    function: FunctionCall
    data: JSONObject = attrs.field(factory=dict, repr=False, eq=False)

    @classmethod
    def from_dict(cls, obj: object, where: str) -> ToolCall:
        d = _object(obj, where)
        return cls(
            _opt_str(d.get("id"), f"{where}.id") or "",
            _opt_str(d.get("type"), f"{where}.type") or "function",
            FunctionCall.from_dict(d.get("function", {}), f"{where}.function"),
            d,
        )


@attrs.frozen
class ChatCompletionMessage(_Keeps):
    """The message of one choice: ``role``, ``content`` and, when the model calls tools,
    ``tool_calls``. ``reasoning_content`` is what reasoning models (xAI's among them)
    return of their thinking; ``refusal`` is set when the model declined."""

    role: str
    content: str | None
    tool_calls: tuple[ToolCall, ...] = ()
    refusal: str | None = None
    reasoning_content: str | None = None
    data: JSONObject = attrs.field(factory=dict, repr=False, eq=False)

    @classmethod
    def from_dict(cls, obj: object, where: str) -> ChatCompletionMessage:
        d = _object(obj, where)
        raw_calls = d.get("tool_calls")
        calls: tuple[ToolCall, ...] = ()
        if raw_calls is not None:
            calls = tuple(
                ToolCall.from_dict(c, f"{where}.tool_calls[{i}]")
                for i, c in enumerate(_list(raw_calls, f"{where}.tool_calls"))
            )
        return cls(
            _opt_str(d.get("role"), f"{where}.role") or "assistant",
            _opt_str(d.get("content"), f"{where}.content"),
            calls,
            _opt_str(d.get("refusal"), f"{where}.refusal"),
            _opt_str(d.get("reasoning_content"), f"{where}.reasoning_content"),
            d,
        )


@attrs.frozen
class Choice(_Keeps):
    """One of the ``n`` answers of a completion."""

    index: int
    message: ChatCompletionMessage
    finish_reason: str | None
    data: JSONObject = attrs.field(factory=dict, repr=False, eq=False)

    @classmethod
    def from_dict(cls, obj: object, where: str) -> Choice:
        d = _object(obj, where)
        if "message" not in d:
            raise APIResponseValidationError(f"invalid response: {where}: has no 'message'")
        return cls(
            _int(d.get("index"), f"{where}.index"),
            ChatCompletionMessage.from_dict(d["message"], f"{where}.message"),
            _opt_str(d.get("finish_reason"), f"{where}.finish_reason"),
            d,
        )


@attrs.frozen
class ChatCompletion(_Keeps):
    """A chat completion: ``choices``, ``usage`` and the ids that name it.

    ``completion.content`` is a shortcut for ``choices[0].message.content``.
    """

    id: str
    model: str
    created: int
    choices: tuple[Choice, ...]
    usage: Usage | None
    object: str = "chat.completion"
    system_fingerprint: str | None = None
    data: JSONObject = attrs.field(factory=dict, repr=False, eq=False)

    @property
    def content(self) -> str | None:
        """The text of the first choice (``None`` when it only calls tools)."""
        return self.choices[0].message.content if self.choices else None

    @classmethod
    def from_dict(cls, obj: Any) -> ChatCompletion:
        """Build from a parsed response body.

        Raises:
            APIResponseValidationError: naming the first place the body breaks the API.
        """
        d = _object(obj, "body")
        if "choices" not in d:
            raise APIResponseValidationError("invalid response: body: has no 'choices'")
        choices = tuple(
            Choice.from_dict(c, f"choices[{i}]")
            for i, c in enumerate(_list(d["choices"], "choices"))
        )
        usage = d.get("usage")
        return cls(
            _opt_str(d.get("id"), "id") or "",
            _opt_str(d.get("model"), "model") or "",
            _int(d.get("created"), "created"),
            choices,
            None if usage is None else Usage.from_dict(usage),
            _opt_str(d.get("object"), "object") or "chat.completion",
            _opt_str(d.get("system_fingerprint"), "system_fingerprint"),
            d,
        )


# --- streaming -------------------------------------------------------------------


@attrs.frozen
class ChoiceDeltaToolCall(_Keeps):
    """A piece of a tool call in a stream: pieces with the same ``index`` are one call,
    their ``function.arguments`` fragments concatenated."""

    index: int
    id: str | None
    type: str | None
    function_name: str | None
    function_arguments: str | None
    data: JSONObject = attrs.field(factory=dict, repr=False, eq=False)

    @classmethod
    def from_dict(cls, obj: object, where: str) -> ChoiceDeltaToolCall:
        d = _object(obj, where)
        fn = d.get("function")
        name = arguments = None
        if fn is not None:
            fn = _object(fn, f"{where}.function")
            name = _opt_str(fn.get("name"), f"{where}.function.name")
            arguments = _opt_str(fn.get("arguments"), f"{where}.function.arguments")
        return cls(
            _int(d.get("index"), f"{where}.index"),
            _opt_str(d.get("id"), f"{where}.id"),
            _opt_str(d.get("type"), f"{where}.type"),
            name,
            arguments,
            d,
        )


_NO_TOOL_CALLS: tuple[ChoiceDeltaToolCall, ...] = ()


@attrs.frozen
class ChoiceDelta(_Keeps):
    """What one chunk adds to a choice: usually a few characters of ``content``."""

    role: str | None = None
    content: str | None = None
    tool_calls: tuple[ChoiceDeltaToolCall, ...] = ()
    refusal: str | None = None
    reasoning_content: str | None = None
    data: JSONObject = attrs.field(factory=dict, repr=False, eq=False)

    @classmethod
    def from_dict(cls, obj: object, where: str) -> ChoiceDelta:
        d = _object(obj, where)
        content = d.get("content")
        role = d.get("role")
        # The common delta is a few characters of content: check it in one line.
        if (content is None or type(content) is str) and (role is None or type(role) is str):
            if "tool_calls" not in d and "refusal" not in d and "reasoning_content" not in d:
                return cls(role, content, _NO_TOOL_CALLS, None, None, d)
        else:
            _opt_str(content, f"{where}.content")
            _opt_str(role, f"{where}.role")
        raw_calls = d.get("tool_calls")
        calls = _NO_TOOL_CALLS
        if raw_calls is not None:
            calls = tuple(
                ChoiceDeltaToolCall.from_dict(c, f"{where}.tool_calls[{i}]")
                for i, c in enumerate(_list(raw_calls, f"{where}.tool_calls"))
            )
        return cls(
            role,
            content,
            calls,
            _opt_str(d.get("refusal"), f"{where}.refusal"),
            _opt_str(d.get("reasoning_content"), f"{where}.reasoning_content"),
            d,
        )


@attrs.frozen
class ChunkChoice(_Keeps):
    """One choice's part of a chunk."""

    index: int
    delta: ChoiceDelta
    finish_reason: str | None
    data: JSONObject = attrs.field(factory=dict, repr=False, eq=False)


@attrs.frozen
class ChatCompletionChunk(_Keeps):
    """One event of a streamed completion.

    ``choices`` is empty on the final usage chunk that ``stream_options={"include_usage":
    True}`` asks for; ``usage`` is set only there.
    """

    id: str
    model: str
    created: int
    choices: tuple[ChunkChoice, ...]
    usage: Usage | None = None
    system_fingerprint: str | None = None
    data: JSONObject = attrs.field(factory=dict, repr=False, eq=False)

    @property
    def content(self) -> str:
        """The new text of the first choice in this chunk (``""`` when none)."""
        if self.choices:
            return self.choices[0].delta.content or ""
        return ""

    @classmethod
    def from_dict(cls, obj: object) -> ChatCompletionChunk:
        # Built once per token: straight-line checks, and a message for the error
        # path only when there is an error.
        if type(obj) is not dict:
            raise _fail("chunk", "an object", obj)
        raw_choices = obj.get("choices")
        if raw_choices is None:
            choices: tuple[ChunkChoice, ...] = ()
        elif type(raw_choices) is not list:
            raise _fail("chunk.choices", "a list", raw_choices)
        elif len(raw_choices) == 1:
            choices = (_chunk_choice(raw_choices[0], 0),)
        else:
            choices = tuple([_chunk_choice(c, i) for i, c in enumerate(raw_choices)])
        # null is read as missing, as ChatCompletion.from_dict does.
        ident = obj.get("id") or ""
        model = obj.get("model") or ""
        created = obj.get("created") or 0
        fingerprint = obj.get("system_fingerprint")
        if type(ident) is not str:
            raise _fail("chunk.id", "a string", ident)
        if type(model) is not str:
            raise _fail("chunk.model", "a string", model)
        if type(created) is not int:
            raise _fail("chunk.created", "an integer", created)
        if fingerprint is not None and type(fingerprint) is not str:
            raise _fail("chunk.system_fingerprint", "a string or null", fingerprint)
        usage = obj.get("usage")
        if usage is not None:
            usage = Usage.from_dict(usage, "chunk.usage")
        chunk: ChatCompletionChunk = _new(ChatCompletionChunk)
        _k_id(chunk, ident)
        _k_model(chunk, model)
        _k_created(chunk, created)
        _k_choices(chunk, choices)
        _k_usage(chunk, usage)
        _k_fingerprint(chunk, fingerprint)
        _k_data(chunk, obj)
        return chunk


def _chunk_choice(c: object, i: int) -> ChunkChoice:
    if type(c) is not dict:
        raise _fail(f"chunk.choices[{i}]", "an object", c)
    delta = c.get("delta")
    finish = c.get("finish_reason")
    index = c.get("index", i)
    if finish is not None and type(finish) is not str:
        raise _fail(f"chunk.choices[{i}].finish_reason", "a string or null", finish)
    if type(index) is not int:
        raise _fail(f"chunk.choices[{i}].index", "an integer", index)
    if type(delta) is dict:
        content = delta.get("content")
        role = delta.get("role")
        # The common delta: a few characters of content (and once, the role).
        if (
            (content is None or type(content) is str)
            and (role is None or type(role) is str)
            and "tool_calls" not in delta
            and "refusal" not in delta
            and "reasoning_content" not in delta
        ):
            new_delta: ChoiceDelta = _new(ChoiceDelta)
            _d_role(new_delta, role)
            _d_content(new_delta, content)
            _d_calls(new_delta, _NO_TOOL_CALLS)
            _d_refusal(new_delta, None)
            _d_reasoning(new_delta, None)
            _d_data(new_delta, delta)
            choice: ChunkChoice = _new(ChunkChoice)
            _c_index(choice, index)
            _c_delta(choice, new_delta)
            _c_finish(choice, finish)
            _c_data(choice, c)
            return choice
    return ChunkChoice(
        index,
        ChoiceDelta.from_dict({} if delta is None else delta, f"chunk.choices[{i}].delta"),
        finish,
        c,
    )


# --- building chunks without attrs' __init__ -----------------------------------------
#
# A frozen attrs __init__ writes each field through object.__setattr__ to get past the
# class's own refusal; writing the slots through their descriptors is the same write,
# cheaper, and these three classes are built once per streamed token.
# The values stay frozen. Only for classes with no validators, converters or post-init
# (every field is passed); a test pins that both ways build equal values.

_new = object.__new__
_d_role, _d_content, _d_calls, _d_refusal, _d_reasoning, _d_data = (
    getattr(ChoiceDelta, name).__set__ for name in attrs.fields_dict(ChoiceDelta)
)
_c_index, _c_delta, _c_finish, _c_data = (
    getattr(ChunkChoice, name).__set__ for name in attrs.fields_dict(ChunkChoice)
)
_k_id, _k_model, _k_created, _k_choices, _k_usage, _k_fingerprint, _k_data = (
    getattr(ChatCompletionChunk, name).__set__ for name in attrs.fields_dict(ChatCompletionChunk)
)
