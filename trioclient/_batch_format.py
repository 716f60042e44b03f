"""The Batch API's line format, without I/O: request lines in, result records out.

The durable runner (:mod:`trioclient._batch_file`) does the reading, writing and
resuming; this module only says what a line means:

* :func:`parse_line` turns one JSONL request line into ``(custom_id, body, url)``, or a
  :class:`BadLine` saying why it cannot be sent (the message names the line number);
* :func:`scan` is the first pass over an input: its ids, duplicates and bad lines,
  never its bodies;
* :func:`result_record` and :func:`bad_line_record` build the output records, and
  :func:`error_code` names a trioclient exception the way the record's ``error.code``
  does;
* :func:`classify_record` reads one output line back for a resume.

Input, one request a line (OpenAI's Batch API format, which xAI's batch upload also
takes)::

    {"custom_id": "q1", "method": "POST", "url": "/v1/chat/completions", "body": {...}}

or plain text, one prompt a line; the custom id of a prompt is then ``line-N``. Output,
one record a line::

    {"id": "batch_req_...", "custom_id": "q1",
     "response": {"status_code": 200, "request_id": "...", "body": {...}}, "error": null}
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from typing import IO, Any

import attrs

from . import _endpoints
from ._batch_results import BatchResult
from ._exceptions import (
    APIConnectionError,
    APIResponseValidationError,
    APIStatusError,
    APIStreamError,
    APITimeoutError,
    ProviderError,
    ResponseTooLargeError,
)

__all__ = [
    "BLOCK",
    "SUPPORTED_URLS",
    "BadLine",
    "InputScan",
    "OutputRecord",
    "bad_line_record",
    "classify_record",
    "decode",
    "encode_record",
    "error_code",
    "numbered_lines",
    "parse_line",
    "plain_id",
    "result_record",
    "scan",
]

SUPPORTED_URLS = _endpoints.SUPPORTED_URLS
BLOCK = 1 << 20  # bytes of input read per call (a worker-thread call, in the runner)


@attrs.frozen
class BadLine:
    """An input line that cannot be sent, and why."""

    line: int
    custom_id: str | None
    code: str
    message: str


@attrs.define
class InputScan:
    """What the first pass over the input learned (ids and bad lines, not bodies)."""

    plain: bool = False
    total: int = 0
    ids: dict[str, int] = attrs.field(factory=dict)  # custom_id -> line number
    bad: list[BadLine] = attrs.field(factory=list)
    duplicates: dict[str, list[int]] = attrs.field(factory=dict)


def decode(raw: bytes | str) -> str:
    if isinstance(raw, bytes):
        return raw.decode("utf-8", "replace")
    return raw


def plain_id(number: int) -> str:
    """The custom id of the prompt on line ``number`` of a plain-text input."""
    return f"line-{number}"


def parse_line(text: str, number: int) -> tuple[str, dict[str, Any], str] | BadLine:
    """One JSONL request line -> ``(custom_id, body, url)``, or why it cannot be sent."""
    try:
        obj = json.loads(text)
    except ValueError as exc:
        return BadLine(number, None, "invalid_json", f"line {number}: not valid JSON ({exc})")
    if not isinstance(obj, dict):
        return BadLine(number, None, "invalid_request", f"line {number}: expected a JSON object")
    custom_id = obj.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        return BadLine(
            number,
            None,
            "missing_custom_id",
            f"line {number}: no custom_id (every request needs a unique string custom_id)",
        )
    method = obj.get("method", "POST")
    if not isinstance(method, str) or method.upper() != "POST":
        return BadLine(
            number,
            custom_id,
            "unsupported_method",
            f"line {number}: method {method!r} is not supported: only POST",
        )
    url = obj.get("url", "/v1/chat/completions")
    if url not in SUPPORTED_URLS:
        return BadLine(
            number,
            custom_id,
            "unsupported_url",
            f"line {number}: url {url!r} is not supported: only /v1/chat/completions, "
            "/v1/embeddings or /v1/responses (the /v1 prefix may be left out)",
        )
    body = obj.get("body")
    if not isinstance(body, dict):
        return BadLine(
            number, custom_id, "invalid_body", f"line {number}: 'body' must be a JSON object"
        )
    return custom_id, body, url


def numbered_lines(stream: IO[Any]) -> Iterator[tuple[int, str]]:
    """``(line number, text without its line ending)``, read a block at a time."""
    number = 0
    while True:
        block = stream.readlines(BLOCK)
        if not block:
            return
        for raw in block:
            number += 1
            yield number, decode(raw).rstrip("\r\n")


def scan(stream: IO[Any], plain: bool | None = None) -> InputScan:
    """The first pass over an input (blocking: run it in a worker thread): ids,
    duplicates and bad lines. ``plain=None`` decides the format from the first
    non-blank line (``{`` means JSONL)."""
    found = InputScan()
    for number, text in numbered_lines(stream):
        if not text.strip():
            continue
        if plain is None:
            plain = not text.lstrip().startswith("{")
        found.total += 1
        if plain:
            found.ids[plain_id(number)] = number
            continue
        parsed = parse_line(text, number)
        if isinstance(parsed, BadLine):
            found.bad.append(parsed)
            if parsed.custom_id is None:
                continue
            custom_id = parsed.custom_id
        else:
            custom_id = parsed[0]
        first = found.ids.setdefault(custom_id, number)
        if first != number:
            found.duplicates.setdefault(custom_id, [first]).append(number)
    found.plain = bool(plain)
    return found


def error_code(error: Exception) -> str:
    """The ``error.code`` of a result record for a request that failed with ``error``."""
    if isinstance(error, APIStatusError):
        return error.code or f"http_{error.status_code}"
    if isinstance(error, APITimeoutError):
        return "timeout"
    if isinstance(error, APIConnectionError):
        return "connection_error"
    if isinstance(error, APIStreamError):
        return "stream_error"
    if isinstance(error, ProviderError):
        # An error inside a 200 (OpenRouter): the provider's own code says what it was.
        return str(error.code) if error.code is not None else "provider_error"
    if isinstance(error, APIResponseValidationError):
        return "invalid_response"
    if isinstance(error, ResponseTooLargeError):
        return "response_too_large"
    if isinstance(error, TypeError | ValueError):
        return "invalid_request"
    return "error"


def _record_id() -> str:
    return "batch_req_" + secrets.token_hex(12)


def result_record(result: BatchResult) -> dict[str, Any]:
    """A batch result in the Batch API's output format."""
    if result.response is not None and result.error is None:
        return {
            "id": _record_id(),
            "custom_id": result.custom_id,
            "response": {
                "status_code": result.status_code or 200,
                "request_id": result.request_id,
                "body": result.response.to_dict(),
            },
            "error": None,
        }
    error = result.error
    response = None
    if isinstance(error, APIStatusError):
        response = {
            "status_code": error.status_code,
            "request_id": error.request_id,
            "body": error.body,
        }
    return {
        "id": _record_id(),
        "custom_id": result.custom_id,
        "response": response,
        "error": {
            "code": "error" if error is None else error_code(error),
            "message": str(error),
        },
    }


def bad_line_record(bad: BadLine) -> dict[str, Any]:
    """The error record of an input line that could not be sent."""
    return {
        "id": _record_id(),
        "custom_id": bad.custom_id,
        "response": None,
        "error": {"code": bad.code, "message": bad.message, "line": bad.line},
    }


def encode_record(record: dict[str, Any]) -> bytes:
    """One output line: compact JSON, UTF-8, ending in a newline."""
    return (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


@attrs.frozen
class OutputRecord:
    """What a resume needs from one output line: whose result it is, and whether it
    succeeded. ``bad_line`` is set (and ``custom_id`` is None) for the record of an input
    line that had no custom id."""

    custom_id: str | None
    ok: bool
    bad_line: int | None = None


def classify_record(raw: bytes) -> OutputRecord | None:
    """Read one output line back; None when it is not one of our records (a line the
    runner did not write is left alone, not judged)."""
    try:
        record = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(record, dict):
        return None
    custom_id = record.get("custom_id")
    error = record.get("error")
    if isinstance(error, dict) and isinstance(error.get("line"), int) and custom_id is None:
        return OutputRecord(None, False, bad_line=error["line"])
    if isinstance(custom_id, str):
        return OutputRecord(custom_id, error is None)
    return None
