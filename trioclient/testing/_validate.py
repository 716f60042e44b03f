"""Request validation: what a chat request must look like, read as the OpenAI API does.

Every check raises `BadRequest` naming the first thing wrong, with the same `param` and
`code` fields the real API puts in its 400 bodies, so a client's error handling meets
realistic input. Authentication lives here too: it is one more reading of the request.
"""

from __future__ import annotations

import json
from typing import Any

import attrs

from ._config import Distribution, check_fault_name, to_distribution
from ._dialects import check_dialect
from ._errors import error_body, json_type_name, redact_key
from ._http import Request

__all__ = ["SIM_HEADER", "BadRequest", "Sim", "authenticate", "parse_chat_body", "parse_sim"]

#: The per-request override header: a JSON object with any of
#: `fault` (a fault kind, or null for "no fault" without consuming the script),
#: `ttft` and `tps` (a number or a distribution string; tps null = unpaced) and
#: `answer_tokens` (a positive integer).
SIM_HEADER = b"x-trioclient-sim"

_VALID_ROLES = ("system", "assistant", "user", "function", "tool", "developer")
_SIM_KEYS = frozenset({"fault", "ttft", "tps", "answer_tokens", "dialect", "refuse", "reasoning"})


@attrs.frozen
class Sim:
    """Per-request overrides from the `x-trioclient-sim` header."""

    has_fault: bool = False
    fault: str | None = None
    ttft: Distribution | None = None
    has_tps: bool = False
    tps: Distribution | None = None
    answer_tokens: int | None = None
    dialect: str | None = None
    refuse: bool = False
    reasoning: bool = False


class BadRequest(Exception):
    """A request we answer with a 400; carries the OpenAI-style error fields."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code

    def body(self) -> bytes:
        """The 400 response body."""
        return error_body(self.message, "invalid_request_error", self.param, self.code)


def authenticate(request: Request, expected: str | None) -> tuple[str | None, bytes | None]:
    """Return (key, None) if the bearer key is allowed, else (None, a 401 error body).

    Args:
        request: the request whose `authorization` header is read.
        expected: the one key accepted; None accepts any non-empty key.
    """
    header = request.headers.get(b"authorization")
    scheme, _, token = (header or b"").partition(b" ")
    key = token.strip().decode("latin-1")
    if header is None or scheme.lower() != b"bearer" or not key:
        return None, error_body(
            "You didn't provide an API key. You need to provide your API key in an "
            "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            "invalid_request_error",
        )
    if expected is not None and key != expected:
        return None, error_body(
            f"Incorrect API key provided: {redact_key(key)}. You can find your API key "
            "in your account settings.",
            "invalid_request_error",
            None,
            "invalid_api_key",
        )
    return key, None


def parse_chat_body(raw: bytes) -> dict[str, Any]:
    """Decode and validate a chat request body (raises `BadRequest` naming the problem)."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest(
            "We could not parse the JSON body of your request. (HINT: This likely means "
            "you aren't using your HTTP library correctly. The OpenAI API expects a JSON "
            "payload, but what was sent was not valid JSON.)"
        ) from None
    _validate_chat(body)
    assert isinstance(body, dict)
    return body


def _check_positive_int(body: dict[str, Any], name: str, maximum: int | None = None) -> None:
    value = body.get(name)
    if value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool):
        raise BadRequest(
            f"Invalid type for '{name}': expected an integer, but got "
            f"{json_type_name(value)} instead.",
            name,
            "invalid_type",
        )
    if value < 1:
        raise BadRequest(
            f"Invalid '{name}': integer below minimum value. Expected a value >= 1, "
            f"but got {value} instead.",
            name,
            "integer_below_min_value",
        )
    if maximum is not None and value > maximum:
        raise BadRequest(
            f"Invalid '{name}': integer above maximum value. Expected a value <= {maximum}, "
            f"but got {value} instead.",
            name,
            "integer_above_max_value",
        )


def _validate_chat(body: Any) -> None:
    """Raise `BadRequest` naming the first thing wrong with a chat request body."""
    if not isinstance(body, dict):
        raise BadRequest(
            f"Invalid type for body: expected an object, but got {json_type_name(body)} instead.",
            None,
            "invalid_type",
        )
    model = body.get("model")
    if model is None:
        raise BadRequest("you must provide a model parameter", None, None)
    if not isinstance(model, str):
        raise BadRequest(
            f"Invalid type for 'model': expected a string, but got {json_type_name(model)} "
            "instead.",
            "model",
            "invalid_type",
        )
    if "messages" not in body:
        raise BadRequest(
            "Missing required parameter: 'messages'.", "messages", "missing_required_parameter"
        )
    messages = body["messages"]
    if not isinstance(messages, list):
        raise BadRequest(
            "Invalid type for 'messages': expected an array of objects, but got "
            f"{json_type_name(messages)} instead.",
            "messages",
            "invalid_type",
        )
    if not messages:
        raise BadRequest(
            "Invalid 'messages': empty array. Expected an array with minimum length 1, "
            "but got an empty array instead.",
            "messages",
            "empty_array",
        )
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise BadRequest(
                f"Invalid type for '{where}': expected an object, but got "
                f"{json_type_name(message)} instead.",
                where,
                "invalid_type",
            )
        role = message.get("role")
        if role is None:
            raise BadRequest(
                f"Missing required parameter: '{where}.role'.",
                f"{where}.role",
                "missing_required_parameter",
            )
        if role not in _VALID_ROLES:
            supported = ", ".join(f"'{r}'" for r in _VALID_ROLES[:-1])
            raise BadRequest(
                f"Invalid value: {json.dumps(role)}. Supported values are: {supported}, "
                f"and '{_VALID_ROLES[-1]}'.",
                f"{where}.role",
                "invalid_value",
            )
        content = message.get("content")
        if content is not None and not isinstance(content, str | list):
            raise BadRequest(
                f"Invalid type for '{where}.content': expected one of a string or array of "
                f"objects, but got {json_type_name(content)} instead.",
                f"{where}.content",
                "invalid_type",
            )
    _check_positive_int(body, "max_tokens")
    _check_positive_int(body, "max_completion_tokens")
    _check_positive_int(body, "n", maximum=128)
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise BadRequest(
            f"Invalid type for 'stream': expected a boolean, but got {json_type_name(stream)} "
            "instead.",
            "stream",
            "invalid_type",
        )
    options = body.get("stream_options")
    if options is not None:
        if not isinstance(options, dict):
            raise BadRequest(
                "Invalid type for 'stream_options': expected an object, but got "
                f"{json_type_name(options)} instead.",
                "stream_options",
                "invalid_type",
            )
        if not stream:
            raise BadRequest(
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                "stream_options",
                None,
            )
        include = options.get("include_usage")
        if include is not None and not isinstance(include, bool):
            raise BadRequest(
                "Invalid type for 'stream_options.include_usage': expected a boolean, but "
                f"got {json_type_name(include)} instead.",
                "stream_options.include_usage",
                "invalid_type",
            )
    seed = body.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise BadRequest(
            f"Invalid type for 'seed': expected an integer, but got {json_type_name(seed)} "
            "instead.",
            "seed",
            "invalid_type",
        )
    _validate_tools(body)
    logprobs = body.get("logprobs")
    if logprobs is not None and not isinstance(logprobs, bool):
        raise BadRequest(
            f"Invalid type for 'logprobs': expected a boolean, but got "
            f"{json_type_name(logprobs)} instead.",
            "logprobs",
            "invalid_type",
        )
    top = body.get("top_logprobs")
    if top is not None:
        if not isinstance(top, int) or isinstance(top, bool) or not 0 <= top <= 20:
            raise BadRequest(
                "Invalid 'top_logprobs': expected an integer between 0 and 20.",
                "top_logprobs",
                "invalid_value",
            )
        if not logprobs:
            raise BadRequest(
                "Invalid value for 'top_logprobs': 'logprobs' must be set to true.",
                "top_logprobs",
                None,
            )
    for name in ("temperature", "top_p", "presence_penalty", "frequency_penalty"):
        value = body.get(name)
        if value is not None and (not isinstance(value, int | float) or isinstance(value, bool)):
            raise BadRequest(
                f"Invalid type for '{name}': expected a number, but got "
                f"{json_type_name(value)} instead.",
                name,
                "invalid_type",
            )


def parse_sim(raw: bytes | None) -> Sim:
    """Parse the `x-trioclient-sim` header (raises `BadRequest` naming the problem)."""
    if raw is None:
        return Sim()
    try:
        spec = json.loads(raw)
    except ValueError:
        raise BadRequest("x-trioclient-sim header is not valid JSON", "x-trioclient-sim") from None
    if not isinstance(spec, dict):
        raise BadRequest("x-trioclient-sim header must be a JSON object", "x-trioclient-sim")
    unknown = set(spec) - _SIM_KEYS
    if unknown:
        raise BadRequest(
            f"x-trioclient-sim: unknown key(s) {sorted(unknown)}; known: {sorted(_SIM_KEYS)}",
            "x-trioclient-sim",
        )
    try:
        fault = spec.get("fault")
        if fault is not None:
            check_fault_name(fault)
        ttft = spec.get("ttft")
        tps = spec.get("tps")
        answer_tokens = spec.get("answer_tokens")
        if answer_tokens is not None and (
            not isinstance(answer_tokens, int)
            or isinstance(answer_tokens, bool)
            or answer_tokens < 1
        ):
            raise ValueError("answer_tokens must be a positive integer")
        dialect = spec.get("dialect")
        if dialect is not None:
            check_dialect(dialect)
        for flag in ("refuse", "reasoning"):
            if not isinstance(spec.get(flag, False), bool):
                raise ValueError(f"{flag} must be true or false")
        return Sim(
            has_fault="fault" in spec,
            fault=fault,
            ttft=None if ttft is None else to_distribution(ttft),
            has_tps="tps" in spec,
            tps=None if tps is None else to_distribution(tps),
            answer_tokens=answer_tokens,
            dialect=dialect,
            refuse=spec.get("refuse", False),
            reasoning=spec.get("reasoning", False),
        )
    except (TypeError, ValueError) as exc:
        raise BadRequest(f"x-trioclient-sim: {exc}", "x-trioclient-sim") from None


def _validate_tools(body: dict[str, Any]) -> None:
    """`tools` is a list of functions with names; `tool_choice` fits them."""
    tools = body.get("tools")
    choice = body.get("tool_choice")
    if tools is not None:
        if not isinstance(tools, list):
            raise BadRequest(
                f"Invalid type for 'tools': expected an array of objects, but got "
                f"{json_type_name(tools)} instead.",
                "tools",
                "invalid_type",
            )
        for i, tool in enumerate(tools):
            fn = tool.get("function") if isinstance(tool, dict) else None
            if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                raise BadRequest(
                    f"Missing required parameter: 'tools[{i}].function.name'.",
                    f"tools[{i}].function.name",
                    "missing_required_parameter",
                )
    if choice is None:
        return
    if not tools:
        raise BadRequest(
            "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' "
            "are specified.",
            "tool_choice",
            None,
        )
    names = {t["function"]["name"] for t in tools}
    if isinstance(choice, dict):
        fn = choice.get("function")
        name = fn.get("name") if isinstance(fn, dict) else None
        if name not in names:
            raise BadRequest(
                f"Invalid value for 'tool_choice': no function named {name!r} in 'tools'.",
                "tool_choice",
                None,
            )
    elif choice not in ("none", "auto", "required"):
        raise BadRequest(
            f"Invalid value: {json.dumps(choice)}. Supported values are: 'none', 'auto', "
            "and 'required'.",
            "tool_choice",
            "invalid_value",
        )
