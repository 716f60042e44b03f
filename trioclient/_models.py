"""The chat-completion values: frozen attrs classes built by small explicit parsers.

attrs is not a serialization library, so each class has a ``from_dict`` that says what
it needs to read an answer (``choices`` is a list of objects, each with a ``message``
object whose ``content`` is text, a list of parts or null...) and raises
:class:`~trioclient.APIResponseValidationError` naming the place that made the answer
unreadable. Whatever the server sends that these classes do not name is kept: every
value holds the JSON object it was built from, and ``to_dict()`` gives it back, so a
field a newer API adds is never lost.

**A paid answer is never thrown away over a detail.** Real servers bend the reference:
``created`` as a float, token counts as floats, ``function.arguments`` as an object,
``content`` as a list of parts (Mistral's reasoning models), ``reasoning`` where others
say ``reasoning_content``. Each typed attribute reads what it can (the rules are in the
attribute's docstring) and the value as sent stays in ``to_dict()``. Only what makes
the answer itself unreadable (no ``choices`` list, a choice without a message object,
``content`` that is neither text, parts nor null) is an error.

:func:`completion_from_data` is the one place a response body becomes a
completion, a provider's error, or a validation error.

The streaming classes (:class:`ChatCompletionChunk` and friends) are built once per
chunk, so their parsers are kept to straight-line code: no reflection, no schema walk.
"""

from __future__ import annotations

import copy
import json
import math
from typing import TYPE_CHECKING, Any

import attrs

from ._exceptions import APIResponseValidationError, ProviderError

if TYPE_CHECKING:
    import httpx

__all__ = [
    "Annotation",
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatCompletionMessage",
    "Choice",
    "ChoiceDelta",
    "ChoiceDeltaToolCall",
    "ChoiceLogprobs",
    "ChunkChoice",
    "CompletionTokensDetails",
    "FunctionCall",
    "PromptTokensDetails",
    "TokenLogprob",
    "ToolCall",
    "TopLogprob",
    "Usage",
    "completion_from_data",
    "completion_from_response",
    "provider_error_object",
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


def _text(value: object, default: str | None = None) -> str | None:
    """A string field that is not the answer (an id, a model name, a role...): another
    type reads as ``default`` (the value as sent stays in ``to_dict()``)."""
    return value if type(value) is str else default


def _count(value: object) -> int:
    """A token count: an integer, or a float or numeric string read as one; else 0."""
    if type(value) is int:
        return value
    if type(value) is float and math.isfinite(value):
        return int(value)
    if type(value) is str and value.strip().isdigit():
        return int(value)
    return 0


def _number(value: object) -> float | None:
    if type(value) is int or type(value) is float:
        return float(value)
    return None


def _parts_text(parts: list[Any], kind: str) -> str:
    """The text of the content parts of one ``kind`` (``"text"`` or ``"thinking"``).

    A text part is ``{"type": "text", "text": "..."}`` (a bare string counts as text);
    a Mistral thinking part is ``{"type": "thinking", "thinking": [text parts]}``.
    """
    out: list[str] = []
    for part in parts:
        if type(part) is str:
            if kind == "text":
                out.append(part)
        elif type(part) is dict and part.get("type") == kind:
            inner = part.get(kind)
            if type(inner) is str:
                out.append(inner)
            elif type(inner) is list:
                out.append(_parts_text(inner, "text"))
    return "".join(out)


def _content(value: object, message: str) -> tuple[str | None, tuple[Any, ...] | None]:
    """``content`` as ``(text, parts)``: text as is, or a list of parts with its text
    parts joined. Anything else is not an answer one can read (``message`` is where
    the message is, for the error)."""
    if value is None or type(value) is str:
        return value, None
    if type(value) is list:
        return _parts_text(value, "text"), tuple(value)
    raise _fail(f"{message}.content", "a string, a list of content parts or null", value)


def _reasoning(d: JSONObject, parts: tuple[Any, ...] | None) -> str | None:
    """``reasoning_content`` (xAI, DeepSeek), else ``reasoning`` (OpenRouter, vLLM,
    Ollama), else the thinking parts of a list ``content`` (Mistral)."""
    value = d.get("reasoning_content")
    if type(value) is str:
        return value
    value = d.get("reasoning")
    if type(value) is str:
        return value
    if parts is not None:
        return _parts_text(list(parts), "thinking") or None
    return None


def _arguments(value: object) -> str:
    """``function.arguments`` as JSON text: a string as sent; an object (some servers
    send one) as its JSON encoding, so ``json.loads(arguments)`` works either way."""
    if type(value) is str:
        return value
    if value is None:
        return ""
    return json.dumps(value, ensure_ascii=False)


class _Keeps:
    """Mixin: the JSON object a value was built from, given back by ``to_dict()``."""

    __slots__ = ()
    data: JSONObject

    def to_dict(self) -> JSONObject:
        """The whole JSON object this value was parsed from, as a deep copy."""
        return copy.deepcopy(self.data)


# --- usage --------------------------------------------------------------------------


@attrs.frozen
class PromptTokensDetails(_Keeps):
    """How the prompt tokens break down: ``cached_tokens`` were read from the provider's
    prompt cache (billed lower by most)."""

    cached_tokens: int = 0
    audio_tokens: int = 0
    data: JSONObject = attrs.field(factory=dict, repr=False, eq=False)

    @classmethod
    def from_dict(cls, obj: object) -> PromptTokensDetails | None:
        if type(obj) is not dict:
            return None
        return cls(_count(obj.get("cached_tokens")), _count(obj.get("audio_tokens")), obj)


@attrs.frozen
class CompletionTokensDetails(_Keeps):
    """How the completion tokens break down: ``reasoning_tokens`` were spent thinking
    (billed, but not in the answer's text)."""

    reasoning_tokens: int = 0
    audio_tokens: int = 0
    accepted_prediction_tokens: int = 0
    rejected_prediction_tokens: int = 0
    data: JSONObject = attrs.field(factory=dict, repr=False, eq=False)

    @classmethod
    def from_dict(cls, obj: object) -> CompletionTokensDetails | None:
        if type(obj) is not dict:
            return None
        return cls(
            _count(obj.get("reasoning_tokens")),
            _count(obj.get("audio_tokens")),
            _count(obj.get("accepted_prediction_tokens")),
            _count(obj.get("rejected_prediction_tokens")),
            obj,
        )


@attrs.frozen
class Usage(_Keeps):
    """Token counts of one request.

    A count the server sent as a float (or a numeric string) reads as an integer; one it
    did not send, or sent as something else, reads as 0 (``total_tokens`` as the sum).
    Provider extras (xAI's ``num_sources_used``, OpenRouter's ``cost``...) are in
    ``to_dict()``.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    prompt_tokens_details: PromptTokensDetails | None = None
    completion_tokens_details: CompletionTokensDetails | None = None
    data: JSONObject = attrs.field(factory=dict, repr=False, eq=False)

    @classmethod
    def from_dict(cls, obj: object, where: str = "usage") -> Usage:
        d = _object(obj, where)
        prompt = _count(d.get("prompt_tokens"))
        completion = _count(d.get("completion_tokens"))
        total = d.get("total_tokens")
        prompt_details = d.get("prompt_tokens_details")
        completion_details = d.get("completion_tokens_details")
        return cls(
            prompt,
            completion,
            prompt + completion if total is None else _count(total),
            None if prompt_details is None else PromptTokensDetails.from_dict(prompt_details),
            None
            if completion_details is None
            else CompletionTokensDetails.from_dict(completion_details),
            d,
        )


def _usage(value: object) -> Usage | None:
    return Usage.from_dict(value) if type(value) is dict else None


# --- log probabilities ------------------------------------------------------------------


def _bytes(value: object) -> tuple[int, ...] | None:
    if type(value) is list and all(type(b) is int for b in value):
        return tuple(value)
    return None


@attrs.frozen
class TopLogprob(_Keeps):
    """One of the most likely tokens at a position, with its log probability."""

    token: str
    logprob: float
    bytes: tuple[int, ...] | None = None
    data: JSONObject = attrs.field(factory=dict, repr=False, eq=False)

    @classmethod
    def from_dict(cls, obj: object, where: str) -> TopLogprob:
        d = _object(obj, where)
        logprob = _number(d.get("logprob"))
        return cls(
            _text(d.get("token"), "") or "",
            math.nan if logprob is None else logprob,
            _bytes(d.get("bytes")),
            d,
        )


@attrs.frozen
class TokenLogprob(_Keeps):
    """One token of the answer: its text, log probability (NaN if the server sent no
    number), UTF-8 ``bytes`` (a token can be part of a character) and the
    ``top_logprobs`` alternatives asked for."""

    token: str
    logprob: float
    bytes: tuple[int, ...] | None = None
    top_logprobs: tuple[TopLogprob, ...] = ()
    data: JSONObject = attrs.field(factory=dict, repr=False, eq=False)

    @classmethod
    def from_dict(cls, obj: object, where: str) -> TokenLogprob:
        d = _object(obj, where)
        logprob = _number(d.get("logprob"))
        top = d.get("top_logprobs")
        return cls(
            _text(d.get("token"), "") or "",
            math.nan if logprob is None else logprob,
            _bytes(d.get("bytes")),
            tuple(
                TopLogprob.from_dict(t, f"{where}.top_logprobs[{i}]")
                for i, t in enumerate(top if type(top) is list else ())
                if type(t) is dict
            ),
            d,
        )


def _token_logprobs(value: object, where: str) -> tuple[TokenLogprob, ...] | None:
    if type(value) is not list:
        return None
    # Log probabilities are about the answer, not the answer: an entry that is not an
    # object is left out here (and kept in to_dict()), never a reason to refuse it.
    return tuple(
        TokenLogprob.from_dict(t, f"{where}[{i}]") for i, t in enumerate(value) if type(t) is dict
    )


@attrs.frozen
class ChoiceLogprobs(_Keeps):
    """A choice's ``logprobs``: one :class:`TokenLogprob` per token of ``content`` (or
    of ``refusal``); ``None`` where the server sent none."""

    content: tuple[TokenLogprob, ...] | None = None
    refusal: tuple[TokenLogprob, ...] | None = None
    data: JSONObject = attrs.field(factory=dict, repr=False, eq=False)

    @classmethod
    def from_dict(cls, obj: object, where: str) -> ChoiceLogprobs | None:
        if type(obj) is not dict:
            return None
        return cls(
            _token_logprobs(obj.get("content"), f"{where}.content"),
            _token_logprobs(obj.get("refusal"), f"{where}.refusal"),
            obj,
        )


# --- messages -----------------------------------------------------------------------


@attrs.frozen
class Annotation(_Keeps):
    """A note on the answer's text, such as a web-search citation.

    For ``type == "url_citation"``, ``url``, ``title`` and the cited span
    ``start_index:end_index`` of the content are read from its ``url_citation``.
    """

    type: str
    url: str | None = None
    title: str | None = None
    start_index: int | None = None
    end_index: int | None = None
    data: JSONObject = attrs.field(factory=dict, repr=False, eq=False)

    @classmethod
    def from_dict(cls, obj: object) -> Annotation | None:
        if type(obj) is not dict:
            return None
        inner = obj.get("url_citation")
        cite: JSONObject = inner if type(inner) is dict else obj
        start, end = cite.get("start_index"), cite.get("end_index")
        return cls(
            _text(obj.get("type"), "") or "",
            _text(cite.get("url")),
            _text(cite.get("title")),
            start if type(start) is int else None,
            end if type(end) is int else None,
            obj,
        )


def _annotations(value: object) -> tuple[Annotation, ...]:
    if type(value) is not list:
        return ()
    found = (Annotation.from_dict(a) for a in value)
    return tuple(a for a in found if a is not None)


@attrs.frozen
class FunctionCall(_Keeps):
    """The function a tool call names, with its arguments as JSON text.

    ``arguments`` is the text the model wrote; a server that sent an object instead has
    it JSON-encoded here (the object itself is in ``to_dict()``).
    """

    name: str
    arguments: str
    data: JSONObject = attrs.field(factory=dict, repr=False, eq=False)

    @classmethod
    def from_dict(cls, obj: object, where: str) -> FunctionCall:
        d = _object(obj, where)
        return cls(_text(d.get("name"), "") or "", _arguments(d.get("arguments")), d)


@attrs.frozen
class ToolCall(_Keeps):
    """One tool call in an assistant message.

    Provider extras on the call (Gemini's ``extra_content`` with its thought signature)
    stay in ``to_dict()``, so the message goes back to the provider as it came.
    """

    id: str
    type: str
    function: FunctionCall
    data: JSONObject = attrs.field(factory=dict, repr=False, eq=False)

    @classmethod
    def from_dict(cls, obj: object, where: str) -> ToolCall:
        d = _object(obj, where)
        fn = d.get("function")
        return cls(
            _text(d.get("id"), "") or "",
            _text(d.get("type"), "function") or "function",
            FunctionCall.from_dict({} if fn is None else fn, f"{where}.function"),
            d,
        )


@attrs.frozen
class ChatCompletionMessage(_Keeps):
    """The message of one choice.

    Attributes:
        role: ``"assistant"`` (also when the server left it out).
        content: The answer's text, ``None`` when the model only called tools. When the
            server sent a list of content parts (Mistral's reasoning models), this is
            the text of its ``{"type": "text"}`` parts joined, and the list itself is
            in ``content_parts``.
        content_parts: The list of content parts as sent, or ``None`` when ``content``
            came as text.
        tool_calls: The tools the model called.
        refusal: Set when the model declined to answer (OpenAI).
        reasoning_content: What a reasoning model returned of its thinking:
            ``reasoning_content`` (xAI, DeepSeek), else ``reasoning`` (OpenRouter,
            vLLM, Ollama), else the ``thinking`` parts of a list ``content``.
        annotations: Notes on the text, such as web-search citations.
    """

    role: str
    content: str | None
    tool_calls: tuple[ToolCall, ...] = ()
    refusal: str | None = None
    reasoning_content: str | None = None
    annotations: tuple[Annotation, ...] = ()
    content_parts: tuple[Any, ...] | None = None
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
        content, parts = _content(d.get("content"), where)
        return cls(
            _text(d.get("role"), "assistant") or "assistant",
            content,
            calls,
            _text(d.get("refusal")),
            _reasoning(d, parts),
            _annotations(d.get("annotations")),
            parts,
            d,
        )


@attrs.frozen
class Choice(_Keeps):
    """One of the ``n`` answers of a completion."""

    index: int
    message: ChatCompletionMessage
    finish_reason: str | None
    logprobs: ChoiceLogprobs | None = None
    data: JSONObject = attrs.field(factory=dict, repr=False, eq=False)

    @classmethod
    def from_dict(cls, obj: object, where: str | None, position: int = 0) -> Choice:
        """``where`` names the choice in errors (``None``: ``choices[position]``,
        formatted here rather than by every caller)."""
        if where is None:
            where = f"choices[{position}]"
        d = _object(obj, where)
        if "message" not in d:
            raise APIResponseValidationError(f"invalid response: {where}: has no 'message'")
        index = d.get("index")
        logprobs = d.get("logprobs")
        return cls(
            index if type(index) is int else position,
            ChatCompletionMessage.from_dict(d["message"], f"{where}.message"),
            _text(d.get("finish_reason")),
            None if logprobs is None else ChoiceLogprobs.from_dict(logprobs, f"{where}.logprobs"),
            d,
        )


def _citations(value: object) -> tuple[str, ...]:
    """xAI's ``citations``: URL strings (an object with a ``url`` counts as its URL)."""
    if type(value) is not list:
        return ()
    out = []
    for item in value:
        if type(item) is str:
            out.append(item)
        elif type(item) is dict and type(item.get("url")) is str:
            out.append(item["url"])
    return tuple(out)


def _created(value: object) -> int:
    """Unix seconds: an integer, or a float (some servers) read as its whole seconds."""
    if type(value) is int:
        return value
    if type(value) is float and math.isfinite(value):
        return int(value)
    return 0


def _first_choice(choices: tuple[Any, ...]) -> Any:
    """The choice with index 0 (the one ``content`` shortcuts refer to), else the first."""
    for choice in choices:
        if choice.index == 0:
            return choice
    return choices[0] if choices else None


@attrs.frozen
class ChatCompletion(_Keeps):
    """A chat completion: ``choices``, ``usage`` and the ids that name it.

    ``completion.content`` is a shortcut for the message content of choice 0. Besides
    the fields below, ``citations`` holds the sources xAI's live search used.
    """

    id: str
    model: str
    created: int
    choices: tuple[Choice, ...]
    usage: Usage | None
    object: str = "chat.completion"
    system_fingerprint: str | None = None
    service_tier: str | None = None
    citations: tuple[str, ...] = ()
    data: JSONObject = attrs.field(factory=dict, repr=False, eq=False)

    @property
    def content(self) -> str | None:
        """The text of choice 0 (``None`` when it only calls tools)."""
        choice = _first_choice(self.choices)
        return None if choice is None else choice.message.content

    @classmethod
    def from_dict(cls, obj: Any) -> ChatCompletion:
        """Build from a parsed response body.

        Raises:
            APIResponseValidationError: naming the first place that makes the body
                unreadable as an answer.
        """
        d = _object(obj, "body")
        if "choices" not in d:
            raise APIResponseValidationError("invalid response: body: has no 'choices'")
        choices = tuple(
            [Choice.from_dict(c, None, i) for i, c in enumerate(_list(d["choices"], "choices"))]
        )
        return cls(
            _text(d.get("id"), "") or "",
            _text(d.get("model"), "") or "",
            _created(d.get("created")),
            choices,
            _usage(d.get("usage")),
            _text(d.get("object"), "chat.completion") or "chat.completion",
            _text(d.get("system_fingerprint")),
            _text(d.get("service_tier")),
            _citations(d.get("citations")),
            d,
        )


# --- a response body, classified ----------------------------------------------------


def provider_error_object(obj: object) -> JSONObject | None:
    """The error a provider put inside a successful answer, or ``None``.

    ``{"error": {...}}`` (OpenAI, OpenRouter, llama.cpp, vLLM's stream), ``{"error":
    "text"}``, or vLLM's flat ``{"object": "error", "message": ...}``.
    """
    if type(obj) is not dict:
        return None
    error = obj.get("error")
    if error is not None:
        return error if type(error) is dict else {"message": str(error)}
    if obj.get("object") == "error":
        return obj
    return None


def completion_from_response(response: httpx.Response, body: bytes) -> ChatCompletion:
    """Read a 2xx response body as a completion (JSON first, then
    :func:`completion_from_data`).

    Raises:
        APIResponseValidationError: the body is not JSON; ``.body`` holds its text and
            ``.response`` the HTTP response.
    """
    try:
        data = json.loads(body)
    except ValueError as exc:
        kind = response.headers.get("content-type", "no content type")
        text = body.decode("utf-8", "replace")
        shown = " ".join(text[:800].split())[:200] if body else "(empty body)"
        raise APIResponseValidationError(
            f"invalid response: body is not JSON ({kind}, {len(body)} bytes): {shown}",
            request=response.request,
            body=text,
            response=response,
        ) from exc
    return completion_from_data(response, data)


def completion_from_data(response: httpx.Response, data: Any) -> ChatCompletion:
    """The decoded JSON of a 2xx answer as a completion: the one place that decides.

    Raises:
        ProviderError: the body is the provider's error (``{"error": {...}}`` with a
            200, as OpenRouter sends when a model fails after the request was
            accepted), or a choice ended with ``finish_reason: "error"``: never passed
            off as a completion.
        APIResponseValidationError: not an answer one can read; ``.body`` holds the
            JSON and ``.response`` the HTTP response (status, headers).
    """
    request = response.request
    error = provider_error_object(data)
    if error is not None and not (type(data) is dict and data.get("choices")):
        raise ProviderError.from_body(data, request=request, response=response)
    try:
        completion = ChatCompletion.from_dict(data)
    except APIResponseValidationError as exc:
        raise APIResponseValidationError(
            str(exc), request=request, body=data, response=response
        ) from None
    for choice in completion.choices:
        if choice.finish_reason == "error":
            # The generation failed part way (OpenRouter): what came is not the answer.
            detail = None if error is not None else "a choice ended with finish_reason 'error'"
            raise ProviderError.from_body(data, request=request, response=response, detail=detail)
    return completion


# --- streaming -------------------------------------------------------------------


@attrs.frozen
class ChoiceDeltaToolCall(_Keeps):
    """A piece of a tool call in a stream.

    Pieces with the same ``index`` are one call, their ``function.arguments`` fragments
    concatenated. ``index`` is ``None`` when the provider left it out (Gemini's
    OpenAI-compatible endpoint): then a piece with a new ``id`` starts a new call and
    one without continues the last. ``function_arguments`` sent as an object is given
    as its JSON text.
    """

    index: int | None
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
        if type(fn) is dict:
            name = _text(fn.get("name"))
            raw = fn.get("arguments")
            arguments = None if raw is None else _arguments(raw)
        elif fn is not None:
            raise _fail(f"{where}.function", "an object", fn)
        index = d.get("index")
        return cls(
            index if type(index) is int else None,
            _text(d.get("id")),
            _text(d.get("type")),
            name,
            arguments,
            d,
        )


_NO_TOOL_CALLS: tuple[ChoiceDeltaToolCall, ...] = ()


@attrs.frozen
class ChoiceDelta(_Keeps):
    """What one chunk adds to a choice: usually a few characters of ``content``.

    ``content`` sent as a list of parts reads as the text of its text parts (the
    thinking parts go to ``reasoning_content``); the list is in ``to_dict()``.
    ``reasoning_content`` also reads a ``reasoning`` delta (OpenRouter, vLLM, Ollama).
    """

    role: str | None = None
    content: str | None = None
    tool_calls: tuple[ChoiceDeltaToolCall, ...] = ()
    refusal: str | None = None
    reasoning_content: str | None = None
    data: JSONObject = attrs.field(factory=dict, repr=False, eq=False)

    @classmethod
    def from_dict(cls, obj: object, where: str) -> ChoiceDelta:
        d = _object(obj, where)
        content, parts = _content(d.get("content"), where)
        raw_calls = d.get("tool_calls")
        calls = _NO_TOOL_CALLS
        if raw_calls is not None:
            calls = tuple(
                ChoiceDeltaToolCall.from_dict(c, f"{where}.tool_calls[{i}]")
                for i, c in enumerate(_list(raw_calls, f"{where}.tool_calls"))
            )
        return cls(
            _text(d.get("role")),
            content,
            calls,
            _text(d.get("refusal")),
            _reasoning(d, parts),
            d,
        )


@attrs.frozen
class ChunkChoice(_Keeps):
    """One choice's part of a chunk."""

    index: int
    delta: ChoiceDelta
    finish_reason: str | None
    data: JSONObject = attrs.field(factory=dict, repr=False, eq=False)

    @property
    def logprobs(self) -> ChoiceLogprobs | None:
        """The log probabilities of this delta's tokens, when asked for."""
        # Read when asked, not built per chunk: most streams send "logprobs": null.
        return ChoiceLogprobs.from_dict(self.data.get("logprobs"), "chunk.choice.logprobs")


@attrs.frozen
class ChatCompletionChunk(_Keeps):
    """One event of a streamed completion.

    ``choices`` is empty on the final usage chunk that ``stream_options={"include_usage":
    True}`` asks for; ``usage`` is set only there. With ``n > 1`` each chunk usually
    carries one choice, whichever is next: look at ``choice.index``. Provider extras
    (xAI's ``citations`` on the last chunk, OpenRouter's ``provider``) are in
    ``to_dict()`` and reach the final completion.
    """

    id: str
    model: str
    created: int
    choices: tuple[ChunkChoice, ...]
    usage: Usage | None = None
    system_fingerprint: str | None = None
    data: JSONObject = attrs.field(factory=dict, repr=False, eq=False)

    @property
    def service_tier(self) -> str | None:
        """The service tier that served the request (OpenAI), if the chunk says."""
        # Read when asked, not built per chunk: OpenAI repeats it on every chunk.
        tier = self.data.get("service_tier")
        return tier if type(tier) is str else None

    @property
    def content(self) -> str:
        """The new text of choice 0 in this chunk (``""`` when this chunk has none, as
        when it carries another choice of an ``n > 1`` request)."""
        for choice in self.choices:
            if choice.index == 0:
                return choice.delta.content or ""
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
        # null, or a type the reference does not promise, reads as missing; the value
        # as sent stays in to_dict().
        ident = obj.get("id")
        model = obj.get("model")
        created = obj.get("created")
        fingerprint = obj.get("system_fingerprint")
        if type(ident) is not str:
            ident = ""
        if type(model) is not str:
            model = ""
        if type(created) is not int:
            created = _created(created)
        if fingerprint is not None and type(fingerprint) is not str:
            fingerprint = None
        usage = obj.get("usage")
        if usage is not None:
            usage = _usage(usage)
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
        finish = None
    if type(index) is not int:
        index = i
    if type(delta) is dict:
        content = delta.get("content")
        # The common delta: a few characters of content and nothing else; else (once,
        # the role) nothing but text, role and nulls the accumulator ignores.
        role = None
        if (type(content) is str and len(delta) == 1) or (
            (content is None or type(content) is str)
            and ((role := delta.get("role")) is None or type(role) is str)
            and "tool_calls" not in delta
            and "refusal" not in delta
            and "reasoning_content" not in delta
            and "reasoning" not in delta
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
