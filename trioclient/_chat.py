"""The xAI SDK's conversation style, on top of ``chat.completions``.

::

    chat = client.chat.create(model="grok-4", max_tokens=100)
    chat.append(trioclient.system("You are terse."))
    chat.append(trioclient.user("Tell me a joke"))
    response = await chat.sample()
    print(response.content, response.usage.total_tokens)

``sample()`` appends nothing by itself: a :class:`Chat` holds exactly the messages you
appended. For a multi-turn conversation, append the answer before the next question
(``chat.append(response)``). That keeps two concurrent ``sample()`` calls on one chat
from racing to write its history, and lets you sample the same prompt several times.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from ._models import ChatCompletion, ChatCompletionChunk, Choice, ToolCall, Usage

if TYPE_CHECKING:
    from ._stream import ChatCompletionStream

__all__ = ["Chat", "Response", "assistant", "system", "tool_result", "user"]

Message = dict[str, Any]


def _message(role: str, content: object) -> Message:
    if not isinstance(content, str | list):
        raise TypeError(
            f"{role}() takes the message text (or a list of content parts), "
            f"got {type(content).__name__}"
        )
    return {"role": role, "content": content}


def system(content: str) -> Message:
    """A system message: ``{"role": "system", "content": content}``."""
    return _message("system", content)


def user(content: str | list[Any]) -> Message:
    """A user message (text, or a list of content parts such as images)."""
    return _message("user", content)


def assistant(content: str) -> Message:
    """An assistant message, for replaying a conversation."""
    return _message("assistant", content)


def tool_result(tool_call_id: str, content: str) -> Message:
    """The answer to a tool call, to append after the assistant's tool-calling message."""
    return {"role": "tool", "tool_call_id": tool_call_id, "content": content}


class Response:
    """One answer of :meth:`Chat.sample`, or the answer so far in :meth:`Chat.stream`.

    In a stream, the same ``Response`` comes with every chunk and always shows the
    answer so far, as in the xAI SDK. It is assembled only when you read it, so a
    loop that reads just ``chunk.content`` costs nothing extra per chunk.

    As in the xAI SDK, a response shows **one** choice: the one with ``index`` 0 unless
    made for another (:meth:`Chat.sample_batch` makes one per choice). With ``n > 1``
    its ``content``, ``tool_calls`` and the rest never mix the choices; the other
    choices are in ``completion.choices``.

    Attributes:
        completion: The whole :class:`ChatCompletion` behind it.
        index: The choice this response shows.
    """

    __slots__ = ("_built_at", "_completion", "_stream", "index")

    def __init__(self, completion: ChatCompletion, index: int = 0) -> None:
        self._completion = completion
        self._stream: ChatCompletionStream | None = None
        self._built_at = -1
        self.index = index

    @classmethod
    def _following(cls, stream: ChatCompletionStream) -> Response:
        response = cls.__new__(cls)
        response._stream = stream
        response._built_at = -1
        response.index = 0
        return response

    @property
    def _choice(self) -> Choice | None:
        for choice in self.completion.choices:
            if choice.index == self.index:
                return choice
        return None

    @property
    def completion(self) -> ChatCompletion:
        stream = self._stream
        if stream is not None and stream.chunks_received != self._built_at:
            self._completion = stream.current_completion()
            self._built_at = stream.chunks_received
        return self._completion

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Response):
            return NotImplemented
        return self.completion == other.completion

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Response(content={self.content!r}, finish_reason={self.finish_reason!r})"

    @property
    def content(self) -> str:
        """The answer's text (``""`` when the model only called tools)."""
        choice = self._choice
        return (choice.message.content or "") if choice is not None else ""

    @property
    def role(self) -> str:
        choice = self._choice
        return choice.message.role if choice is not None else "assistant"

    @property
    def reasoning_content(self) -> str | None:
        """What a reasoning model returned of its thinking, if anything."""
        choice = self._choice
        return choice.message.reasoning_content if choice is not None else None

    @property
    def refusal(self) -> str | None:
        """Why the model declined to answer, when it did."""
        choice = self._choice
        return choice.message.refusal if choice is not None else None

    @property
    def tool_calls(self) -> tuple[ToolCall, ...]:
        choice = self._choice
        return choice.message.tool_calls if choice is not None else ()

    @property
    def finish_reason(self) -> str | None:
        choice = self._choice
        return choice.finish_reason if choice is not None else None

    @property
    def citations(self) -> tuple[str, ...]:
        """The sources xAI's live search used (URLs), if any."""
        return self.completion.citations

    @property
    def usage(self) -> Usage:
        """Token counts (zeros when the server sent none)."""
        return self.completion.usage or Usage()

    @property
    def id(self) -> str:
        return self.completion.id

    def to_message(self) -> Message:
        """This answer as an assistant message, to append to a conversation."""
        choice = self._choice
        if choice is None:
            return {"role": "assistant", "content": ""}
        message = dict(choice.message.data)
        message.setdefault("role", "assistant")
        return message


class _Completions(Protocol):
    """What a conversation needs of ``client.chat.completions``."""

    async def create(self, *, model: str, messages: Any, **params: Any) -> Any: ...

    def stream(
        self, *, model: str, messages: Any, **params: Any
    ) -> contextlib.AbstractAsyncContextManager[ChatCompletionStream]: ...


class Chat:
    """A conversation: the model, its parameters and the messages appended so far."""

    def __init__(self, completions: _Completions, model: str, params: Mapping[str, Any]) -> None:
        if not isinstance(model, str) or not model:
            raise ValueError(f"model must be a non-empty string, got {model!r}")
        self._completions = completions
        self.model = model
        self.params = dict(params)
        self.messages: list[Message] = []

    def __repr__(self) -> str:
        return f"<trioclient.Chat model={self.model!r} messages={len(self.messages)}>"

    def append(self, message: Mapping[str, Any] | Response) -> Chat:
        """Add a message (from :func:`user`, :func:`system`...) or an earlier answer."""
        if isinstance(message, Response):
            self.messages.append(message.to_message())
        elif isinstance(message, Mapping):
            if not isinstance(message.get("role"), str):
                raise ValueError("a message needs a 'role' (use trioclient.user(...) and friends)")
            self.messages.append(dict(message))
        else:
            raise TypeError(
                f"append() takes a message dict or a Response, got {type(message).__name__}"
            )
        return self

    async def sample(self, **params: Any) -> Response:
        """Ask the model for one answer to the conversation so far (appends nothing)."""
        completion = await self._completions.create(
            model=self.model, messages=list(self.messages), **{**self.params, **params}
        )
        return Response(completion)

    async def sample_batch(self, n: int, **params: Any) -> list[Response]:
        """Ask for ``n`` answers in one request (``n=n``): one :class:`Response` per
        choice, as the xAI SDK's ``sample_batch`` gives."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        completion = await self._completions.create(
            model=self.model, messages=list(self.messages), **{**self.params, **params, "n": n}
        )
        return [Response(completion, i) for i in range(n)]

    @contextlib.asynccontextmanager
    async def stream(self, **params: Any) -> AsyncIterator[_ResponseAndChunk]:
        """Stream one answer: ``async with chat.stream() as s: async for response, chunk in s:``.

        ``response`` is the answer accumulated so far, ``chunk.content`` the new text,
        both of choice 0 (as in the xAI SDK; with ``n > 1`` the other choices are in
        ``response.completion.choices`` and ``chunk.choices``).
        """
        merged = {**self.params, **params}
        async with self._completions.stream(
            model=self.model, messages=list(self.messages), **merged
        ) as stream:
            yield _ResponseAndChunk(stream)


class _ResponseAndChunk:
    """Iterates a stream as ``(answer so far, new chunk)`` pairs, as the xAI SDK does.

    A plain iterator class rather than an async generator, so leaving the loop early
    leaves no half-run generator behind for the garbage collector to finalize.
    """

    def __init__(self, stream: ChatCompletionStream) -> None:
        self._stream = stream
        self._response = Response._following(stream)

    def __aiter__(self) -> _ResponseAndChunk:
        return self

    async def __anext__(self) -> tuple[Response, ChatCompletionChunk]:
        return self._response, await self._stream.__anext__()
