"""OpenAI-style error bodies: `{"error": {"message", "type", "param", "code"}}`.

Messages follow the wording the real API uses where we know it, so a client's error
handling (and a human reading a log) meets what it would meet in production.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["error_body", "json_type_name", "redact_key"]

HTML_502_PAGE = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)

SERVER_ERROR_MESSAGE = "The server had an error while processing your request. Sorry about that!"

STATUS_ERRORS: dict[int, tuple[str, str]] = {
    500: (SERVER_ERROR_MESSAGE, "server_error"),
    502: ("Bad gateway.", "server_error"),
    503: ("The engine is currently overloaded, please try again later.", "server_error"),
    504: ("Gateway timeout.", "server_error"),
}


def error_body(
    message: str, type_: str, param: str | None = None, code: str | None = None
) -> bytes:
    """The JSON body of an error response."""
    return json.dumps(
        {"error": {"message": message, "type": type_, "param": param, "code": code}},
        separators=(",", ":"),
    ).encode()


def json_type_name(value: Any) -> str:
    """How OpenAI's validation messages name a JSON value's type ("a string", ...)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def redact_key(key: str) -> str:
    """Show a few characters of an API key, never the whole of it.

    Keys shorter than 16 characters are hidden entirely: showing 5 characters of a
    10-character key would give half of it away.
    """
    if len(key) < 16:
        return "*" * 8
    return f"{key[:3]}{'*' * 8}{key[-2:]}"
