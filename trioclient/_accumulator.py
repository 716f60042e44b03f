"""Chunks in, the completion they add up to out: how every provider's stream is merged.

Per choice (``choice.index``; with ``n > 1`` the choices never mix), the content,
reasoning and refusal deltas are concatenated, log probabilities and annotations
appended, the last ``finish_reason`` kept. The usage chunk's ``usage`` is kept whole
(with its details), and so are xAI's ``citations``.

Tool calls are where providers differ most, so the rules are written out:

* a piece with an ``index`` belongs to the call with that index (OpenAI, xAI, vLLM,
  llama.cpp, Ollama);
* a piece without one (Gemini's OpenAI-compatible endpoint) starts a new call when it
  has an ``id`` other than the last call's, and continues the last call otherwise;
* a piece that names a function under an ``id`` other than that of the call already
  at its index is a new call, not a fragment of the old one (servers that number
  every call 0): two calls are never merged into one corrupt call;
* the ``id``, ``type`` and ``name`` are taken once: a provider that repeats them in
  every piece does not get them concatenated (a name that grows by fragments, one
  that is not a repeat of the whole, is still joined); a piece whose arguments repeat
  the whole arguments so far, complete JSON, is a repeat too, not more arguments;
* other keys of a piece (Gemini's ``extra_content`` with its thought signature) are
  kept on the call, so the message can go back to the provider as it came.
"""

from __future__ import annotations

import json
from typing import Any

from ._models import ChatCompletion, ChatCompletionChunk, ChoiceDeltaToolCall, Usage

__all__ = ["ChunkAccumulator"]

_CALL_KEYS = frozenset({"index", "id", "type", "function"})


class _CallParts:
    __slots__ = ("arguments", "extra", "id", "index", "length", "name", "type")

    def __init__(self, index: int | None) -> None:
        self.index = index
        self.id: str | None = None
        self.type: str | None = None
        self.name: str | None = None
        self.arguments: list[str] = []
        self.length = 0  # of the arguments so far
        self.extra: dict[str, Any] = {}

    def add(self, call: ChoiceDeltaToolCall) -> None:
        if call.id and not self.id:
            self.id = call.id
        if call.type and not self.type:
            self.type = call.type
        name = call.function_name
        if name:
            if not self.name:
                self.name = name
            elif name != self.name:
                self.name += name
        arguments = call.function_arguments
        if arguments and not self._repeats(arguments):
            self.arguments.append(arguments)
            self.length += len(arguments)
        data = call.data
        if not _CALL_KEYS.issuperset(data):
            for key, value in data.items():
                if key not in _CALL_KEYS:
                    self.extra[key] = value

    def _repeats(self, arguments: str) -> bool:
        # Some servers send the whole arguments again after their fragments: a piece
        # equal to everything so far, which is complete JSON, adds nothing.
        if len(arguments) != self.length or arguments != "".join(self.arguments):
            return False
        try:
            json.loads(arguments)
        except ValueError:
            return False
        return True

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.extra,
            "id": self.id or "",
            "type": self.type or "function",
            "function": {"name": self.name or "", "arguments": "".join(self.arguments)},
        }


class _ChoiceParts:
    __slots__ = (
        "annotations",
        "by_index",
        "calls",
        "content",
        "finish_reason",
        "logprobs",
        "reasoning",
        "refusal",
        "refusal_logprobs",
        "role",
    )

    def __init__(self) -> None:
        self.role: str | None = None
        self.content: list[str] = []
        self.reasoning: list[str] = []
        self.refusal: list[str] = []
        self.finish_reason: str | None = None
        self.calls: list[_CallParts] = []
        self.by_index: dict[int, _CallParts] = {}
        self.logprobs: list[Any] | None = None
        self.refusal_logprobs: list[Any] | None = None
        self.annotations: list[Any] = []

    def add_call(self, call: ChoiceDeltaToolCall) -> None:
        index = call.index
        if index is None:
            target = self.calls[-1] if self.calls else None
        else:
            target = self.by_index.get(index)
        if target is None or (
            call.id and target.id and call.id != target.id and (index is None or call.function_name)
        ):
            target = _CallParts(index)
            self.calls.append(target)
            if index is not None:
                self.by_index[index] = target
        target.add(call)


class ChunkAccumulator:
    """Merges chunks into the :class:`ChatCompletion` they add up to (see the module
    docstring for the rules)."""

    def __init__(self) -> None:
        self.id = ""
        self.model = ""
        self.created = 0
        self.system_fingerprint: str | None = None
        self.service_tier: str | None = None
        self.citations: Any = None
        self.usage: Usage | None = None
        self.chunks = 0
        self.failed = False
        """Whether a choice ended with ``finish_reason: "error"``."""
        self._choices: dict[int, _ChoiceParts] = {}

    def add(self, chunk: ChatCompletionChunk) -> None:
        if not self.chunks:
            self.id, self.model, self.created = chunk.id, chunk.model, chunk.created
            self.system_fingerprint = chunk.system_fingerprint
            self.service_tier = chunk.service_tier
        self.chunks += 1
        if chunk.usage is not None:
            self.usage = chunk.usage
        choices = self._choices
        for choice in chunk.choices:
            parts = choices.get(choice.index)
            if parts is None:
                parts = choices[choice.index] = _ChoiceParts()
            delta = choice.delta
            if delta.content:
                parts.content.append(delta.content)
            if delta.role:
                parts.role = delta.role
            if delta.reasoning_content:
                parts.reasoning.append(delta.reasoning_content)
            if delta.refusal:
                parts.refusal.append(delta.refusal)
            for call in delta.tool_calls:
                parts.add_call(call)
            logprobs = choice.data.get("logprobs")
            if logprobs is not None:
                self._add_logprobs(parts, logprobs)
            if "annotations" in delta.data:
                found = delta.data["annotations"]
                if type(found) is list:
                    parts.annotations.extend(found)
            if choice.finish_reason is not None:
                parts.finish_reason = choice.finish_reason
                if choice.finish_reason == "error":
                    self.failed = True
                self._add_citations(chunk)
        if not chunk.choices:
            self._add_citations(chunk)

    def _add_citations(self, chunk: ChatCompletionChunk) -> None:
        # xAI sends its citations on the last chunk (with the finish reason or usage):
        # looked for there only, not on every chunk.
        citations = chunk.data.get("citations")
        if citations:
            self.citations = citations

    @staticmethod
    def _add_logprobs(parts: _ChoiceParts, data: Any) -> None:
        if type(data) is not dict:
            return
        content = data.get("content")
        if type(content) is list:
            if parts.logprobs is None:
                parts.logprobs = []
            parts.logprobs.extend(content)
        refusal = data.get("refusal")
        if type(refusal) is list:
            if parts.refusal_logprobs is None:
                parts.refusal_logprobs = []
            parts.refusal_logprobs.extend(refusal)

    def completion(self) -> ChatCompletion:
        """The completion the chunks so far add up to (built fresh on each call)."""
        choices = []
        for index in sorted(self._choices):
            parts = self._choices[index]
            message: dict[str, Any] = {
                "role": parts.role or "assistant",
                # No text beside tool calls or a refusal is null, as in a whole answer.
                "content": "".join(parts.content)
                if parts.content or not (parts.calls or parts.refusal)
                else None,
            }
            if parts.reasoning:
                message["reasoning_content"] = "".join(parts.reasoning)
            if parts.refusal:
                message["refusal"] = "".join(parts.refusal)
            if parts.calls:
                message["tool_calls"] = [call.to_dict() for call in parts.calls]
            if parts.annotations:
                message["annotations"] = list(parts.annotations)
            choice: dict[str, Any] = {
                "index": index,
                "message": message,
                "finish_reason": parts.finish_reason,
            }
            if parts.logprobs is not None or parts.refusal_logprobs is not None:
                choice["logprobs"] = {
                    "content": parts.logprobs,
                    "refusal": parts.refusal_logprobs,
                }
            choices.append(choice)
        body: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }
        if self.system_fingerprint is not None:
            body["system_fingerprint"] = self.system_fingerprint
        if self.service_tier is not None:
            body["service_tier"] = self.service_tier
        if self.usage is not None:
            body["usage"] = self.usage.to_dict()
        if self.citations is not None:
            body["citations"] = self.citations
        return ChatCompletion.from_dict(body)
