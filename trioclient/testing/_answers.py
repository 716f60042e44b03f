"""Deterministic answer text and the toy tokenizer that counts it.

The server is no language model, but a demo should show something readable and a
test should be able to predict it. So an answer is a few template sentences built
around words taken from the last user message, picked by a `random.Random` seeded
with a stable hash of (messages, seed, choice index). Same prompt and seed, same
answer, in every process and on every run (Python's `hash()` is salted per process,
so we use blake2b).

The tokenizer is deliberately simple: a token is a run of word characters or one
punctuation character, with the whitespace before it. That makes the answer's
pieces (what each streamed chunk carries) and the token count the same thing:
`count_tokens(answer) == len(pieces)`, so `usage.completion_tokens` equals the
number of content chunks a client receives.
"""

from __future__ import annotations

import functools
import hashlib
import json
import random
import re
from collections.abc import Sequence
from typing import Any

__all__ = [
    "answer_pieces",
    "count_tokens",
    "default_answer_length",
    "prompt_key",
    "prompt_tokens",
    "split_tokens",
]

_TOKEN = re.compile(r"\w+|[^\w\s]")
_PIECE = re.compile(r"\s*(?:\w+|[^\w\s])")
_WORD = re.compile(r"\w+")

#: Per-message overhead in `prompt_tokens`, as chat formats wrap each message in a few
#: role/separator tokens; plus a fixed priming cost for the reply.
PER_MESSAGE_TOKENS = 3
REPLY_PRIMING_TOKENS = 3
#: What an image part counts for (it has no text to tokenize).
IMAGE_PART_TOKENS = 85

_STOP_WORDS = frozenset(
    "a an and are as at be but by can do does for from has have how i if in is it its "
    "me my of on or so that the their them then there these this to was we what when "
    "where which who why will with you your about tell explain please give show some "
    "more most very just also into than like".split()
)

_TEMPLATES = (
    "You asked about {a}, so here is a short answer.",
    "The key idea behind {a} is that it connects to {b}.",
    "Think of {a} as one part of a larger picture that includes {b}.",
    "In practice, {a} depends on the context you are working in.",
    "A simple way to see {a} is to compare it with {b}.",
    "Most people who look at {a} start with {b} and work from there.",
    "There is more to say about {a}, but this covers the basics.",
    "If {b} matters to you, then {a} is worth a closer look.",
    "To sum up, {a} and {b} go together more often than not.",
)

_FALLBACK_TOPICS = ("your question", "this topic", "the details", "the idea")


def count_tokens(text: str) -> int:
    """How many tokens `text` is: word runs plus single punctuation characters."""
    return len(_TOKEN.findall(text))


def split_tokens(text: str) -> list[str]:
    """Split `text` into pieces whose concatenation is `text` (up to trailing space)."""
    return _PIECE.findall(text)


def _content_text_and_extra(content: Any) -> tuple[str, int]:
    if isinstance(content, str):
        return content, 0
    if isinstance(content, list):
        texts: list[str] = []
        extra = 0
        for part in content:
            if isinstance(part, dict):
                text = part.get("text")
                if isinstance(text, str):
                    texts.append(text)
                elif part.get("type") in ("image_url", "input_image"):
                    extra += IMAGE_PART_TOKENS
        return " ".join(texts), extra
    return "", 0


def prompt_tokens(messages: Sequence[dict[str, Any]]) -> int:
    """Count the prompt: each message's text tokens plus a per-message overhead.

    Tool calls and names count as the tokens of their JSON text, which is roughly what
    a real tokenizer sees.
    """
    total = REPLY_PRIMING_TOKENS
    for message in messages:
        text, extra = _content_text_and_extra(message.get("content"))
        total += PER_MESSAGE_TOKENS + count_tokens(text) + extra
        name = message.get("name")
        if isinstance(name, str):
            total += count_tokens(name)
        tool_calls = message.get("tool_calls")
        if tool_calls is not None:
            total += count_tokens(json.dumps(tool_calls))
    return total


def prompt_key(messages: Sequence[dict[str, Any]], seed: int | None) -> str:
    """A canonical text for (messages, seed): the cache and hash key of an answer."""
    return json.dumps([messages, seed], sort_keys=True, separators=(",", ":"), default=str)


def _rng_for(key: str, index: int) -> random.Random:
    digest = hashlib.blake2b(f"{index}\x00{key}".encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(digest, "big"))


@functools.lru_cache(maxsize=4096)
def default_answer_length(key: str) -> int:
    """The answer length when none is configured: 20-40 tokens, fixed per prompt."""
    return 20 + _rng_for(key, -1).randrange(21)


def _topics(messages: Sequence[dict[str, Any]]) -> list[str]:
    """Words from the last user message worth talking about, in order of appearance."""
    for message in reversed(messages):
        if message.get("role") == "user":
            text, _ = _content_text_and_extra(message.get("content"))
            words = _WORD.findall(text)
            chosen = [w for w in words if w.lower() not in _STOP_WORDS and len(w) > 2]
            seen: dict[str, None] = dict.fromkeys(chosen or words)
            return list(seen)[:12]
    return []


@functools.lru_cache(maxsize=4096)
def _cached_pieces(key: str, index: int, length: int) -> tuple[str, ...]:
    messages = json.loads(key)[0]
    rng = _rng_for(key, index)
    topics = _topics(messages) or list(_FALLBACK_TOPICS)
    pieces: list[str] = []
    while len(pieces) < length:
        template = rng.choice(_TEMPLATES)
        a, b = rng.sample(topics, 2) if len(topics) > 1 else (topics[0], topics[0])
        sentence = template.format(a=a, b=b)
        if pieces:
            sentence = " " + sentence
        pieces.extend(split_tokens(sentence))
    pieces = pieces[:length]
    if length > 1 and _WORD.fullmatch(pieces[-1].strip()) and _WORD.fullmatch(pieces[-2].strip()):
        # End on a full stop so an answer cut to exactly `length` tokens reads as finished.
        pieces[-1] = "."
    return tuple(pieces)


def answer_pieces(key: str, index: int, length: int) -> tuple[str, ...]:
    """The streamed pieces of choice `index`'s answer for the prompt `key`.

    `"".join(pieces)` is the answer text and `count_tokens` of it is `len(pieces)`.
    The server cuts an answer for `max_tokens` by taking a prefix of these pieces, as a
    real model's truncated output is a prefix of what it would have said.

    Args:
        key: `prompt_key(messages, seed)`.
        index: the choice index (n > 1 gives different answers per choice).
        length: number of tokens wanted (>= 0).
    """
    if length <= 0:
        return ()
    return _cached_pieces(key, index, length)
