"""Every error trioclient raises, in one tree.

::

    APIError                            anything that went wrong talking to the API
    ├── APIConnectionError              no usable HTTP response: refused, reset, cut, DNS
    │   ├── APITimeoutError             a deadline of ours ran out (connect, first byte, idle, total)
    │   └── IncompleteStreamError       a stream ended before ``data: [DONE]``
    ├── APIStatusError                  the server answered with an error status
    │   ├── BadRequestError             400
    │   ├── AuthenticationError         401
    │   ├── PermissionDeniedError       403
    │   ├── NotFoundError               404
    │   ├── ConflictError               409
    │   ├── UnprocessableEntityError    422
    │   ├── RateLimitError              429
    │   └── InternalServerError         >= 500
    ├── ProviderError                   a 2xx answer that is the provider's error (OpenRouter's 200 ``{"error": ...}``)
    │   └── APIStreamError              an error event in a stream (an ``error`` chunk or ``event: error``)
    ├── APIResponseValidationError      a 2xx body that cannot be read as an answer
    └── ResponseTooLargeError           a body larger than ``Client(max_response_bytes=...)``

Every error carries the :class:`httpx.Request` it belongs to (``.request``, with the
``Authorization`` header never shown in any message), and errors raised by a stream
carry what arrived before the failure in ``.partial``, so a cut answer is never
mistaken for a whole one and never lost either.

Bad arguments are not API errors: they raise :class:`ValueError` or :class:`TypeError`
before anything is sent.
"""

from __future__ import annotations

from typing import Any

import httpx

# `partial` is typed Any: the exception tree is a leaf, and naming the answer types
# here would make it import the modules that build answers (and raise these errors).

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIResponseValidationError",
    "APIStatusError",
    "APIStreamError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "IncompleteStreamError",
    "InternalServerError",
    "NotFoundError",
    "PermissionDeniedError",
    "ProviderError",
    "RateLimitError",
    "ResponseTooLargeError",
    "UnprocessableEntityError",
]


class APIError(Exception):
    """Base class of every error from talking to the API.

    Attributes:
        message: What happened, in one sentence a person can act on.
        request: The request this error belongs to, when there was one.
        body: The parsed error body the server sent, if any (a dict for JSON bodies,
            the text otherwise).
        partial: For streams, what arrived before the failure: the completion
            assembled from a chat stream's chunks, or the
            :class:`~trioclient.ResponseObject` assembled from a Responses stream's
            events; ``None`` otherwise.
    """

    def __init__(
        self,
        message: str,
        *,
        request: httpx.Request | None = None,
        body: object = None,
        partial: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.body = body
        self.partial = partial
        self.request = request

    @property
    def request(self) -> httpx.Request | None:
        """The request this error belongs to."""
        return self._request

    @request.setter
    def request(self, request: httpx.Request | None) -> None:
        # Some servers echo the key they refused ("Incorrect API key provided: sk-...")
        # or quote request headers on a debug page. Whatever of that reaches this
        # error's message or body is redacted here, once, for every kind of error.
        self._request = request
        key = _bearer_key(request)
        if key:
            self.message = _redact(self.message, key)
            self.args = (self.message, *self.args[1:])
            self.body = _redact(self.body, key)

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:
        # Keep exceptions picklable (for multiprocessing users) without the request.
        return (_rebuild, (type(self), self.message, self.body))


def _bearer_key(request: httpx.Request | None) -> str | None:
    if request is None:
        return None
    auth = request.headers.get("authorization", "")
    key = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
    return key if len(key) >= 4 else None


def _redact(value: Any, key: str) -> Any:
    """``value`` with every occurrence of ``key`` replaced, through dicts and lists."""
    if isinstance(value, str):
        return value.replace(key, "[redacted]") if key in value else value
    if isinstance(value, dict):
        return {k: _redact(v, key) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v, key) for v in value]
    return value


def _rebuild(cls: type[APIError], message: str, body: object) -> APIError:
    error = cls.__new__(cls)
    APIError.__init__(error, message, body=body)
    if isinstance(error, APIStatusError):
        error.status_code = 0
        error.request_id = None
        error.response = None
        error.headers = httpx.Headers()
    return error


class APIConnectionError(APIError):
    """No usable HTTP response arrived: the connection was refused, reset or cut short."""


class APITimeoutError(APIConnectionError):
    """One of trioclient's own deadlines ran out (connect, first byte, idle or total).

    A deadline the *caller* set with ``trio.move_on_after``/``fail_after`` is not this
    error: that cancels the call the trio way (``Cancelled``/``TooSlowError``).
    """


class IncompleteStreamError(APIConnectionError):
    """A stream ended (EOF, reset) before the server sent ``data: [DONE]``.

    ``.partial`` holds what arrived; it is never reported as a complete answer.
    """


# What a provider's error code says about the request, for codes that are not HTTP
# statuses: OpenAI's and OpenRouter's ``code``/``type`` strings, llama.cpp's types,
# Google's ``status`` names (lowercased).
_CODE_STATUS = {
    **dict.fromkeys(
        (
            "context_length_exceeded",
            "exceed_context_size_error",
            "invalid_request_error",
            "invalid_argument",
            "invalid_prompt",
            "bad_request",
            "bad_request_error",
            "badrequesterror",
            "failed_precondition",
            "out_of_range",
            "string_above_max_length",
        ),
        400,
    ),
    **dict.fromkeys(("authentication_error", "invalid_api_key", "unauthenticated"), 401),
    **dict.fromkeys(("insufficient_quota", "insufficient_credits", "payment_required"), 402),
    **dict.fromkeys(("permission_error", "permission_denied"), 403),
    **dict.fromkeys(("not_found", "not_found_error", "model_not_found"), 404),
    **dict.fromkeys(("timeout", "request_timeout"), 408),
    **dict.fromkeys(
        ("rate_limit_exceeded", "rate_limit_error", "resource_exhausted", "too_many_requests"),
        429,
    ),
    **dict.fromkeys(
        ("server_error", "internal_error", "internal_server_error", "internal", "api_error"), 500
    ),
    **dict.fromkeys(("bad_gateway", "upstream_error"), 502),
    **dict.fromkeys(("overloaded", "overloaded_error", "service_unavailable", "unavailable"), 503),
    **dict.fromkeys(("deadline_exceeded", "gateway_timeout"), 504),
}
_CONTEXT_WORDS = ("context length", "context size", "context window", "maximum context")


def implied_status(error: object) -> int | None:
    """The HTTP status a provider's error object implies, or ``None`` when it says nothing.

    A numeric ``code`` (OpenRouter, llama.cpp, vLLM) is taken as a status. A code, type
    or status string that says the request itself is wrong (``context_length_exceeded``,
    ``invalid_argument``...) wins over a number: llama.cpp has sent
    ``exceed_context_size_error`` with code 500, and sending that request again cannot
    help.
    """
    if not isinstance(error, dict):
        return None
    number: int | None = None
    named: int | None = None
    for key in ("code", "type", "status"):
        value = error.get(key)
        if isinstance(value, bool):
            continue
        if isinstance(value, int) and 100 <= value <= 599:
            number = number or value
        elif isinstance(value, str):
            if value.isdigit() and 100 <= int(value) <= 599:
                number = number or int(value)
            else:
                named = named or _CODE_STATUS.get(value.lower())
    if named is not None and 400 <= named < 500 and named not in (408, 429):
        return named
    if number is not None:
        return number
    if named is not None:
        return named
    message = error.get("message")
    if isinstance(message, str) and any(w in message.lower() for w in _CONTEXT_WORDS):
        return 400
    return None


def describe_provider_error(error: object) -> str:
    """The provider's message and code in one line, for an error's message."""
    if not isinstance(error, dict):
        return repr(error)[:200]
    message = error.get("message")
    text = message if isinstance(message, str) and message else None
    if text is None:
        import json

        text = json.dumps(error, default=str)[:200]
    code, kind = error.get("code"), error.get("type")
    label = f"code {code}" if code is not None else kind if isinstance(kind, str) else None
    return f"{text} ({label})" if label and str(label) not in text else text


class ProviderError(APIError):
    """A successful HTTP status, but the answer is the provider's error.

    OpenRouter answers 200 with ``{"error": {"code": 502, "message": ...,
    "metadata": {...}}}`` when a model fails after the request was accepted; other
    servers do the same in a stream. Such an answer is never a completion.

    Whether it is retried follows :attr:`implied_status`: a code that says the request
    itself is wrong (a 4xx, context length, invalid argument) is not; an overload, a
    rate limit, a 5xx, or a code that says nothing, is.

    Attributes:
        response: The HTTP response it came in (status, headers), when there was one.
    """

    response: httpx.Response | None = None

    @classmethod
    def from_body(
        cls,
        body: object,
        *,
        request: httpx.Request | None = None,
        response: httpx.Response | None = None,
        detail: str | None = None,
    ) -> ProviderError:
        if detail is None:
            detail = describe_provider_error(_error_object(body))
        error = cls(f"the provider returned an error: {detail}", request=request, body=body)
        error.response = response
        return error

    @property
    def error(self) -> dict[str, Any]:
        """The provider's error object (``body["error"]``, or the body itself)."""
        found = _error_object(self.body)
        return found if isinstance(found, dict) else {}

    @property
    def code(self) -> str | int | None:
        """The provider's ``code``, as sent (OpenRouter sends numbers, OpenAI strings)."""
        code = self.error.get("code")
        return code if isinstance(code, str | int) and not isinstance(code, bool) else None

    @property
    def type(self) -> str | None:
        """The provider's error ``type`` (``"server_error"``, ``"invalid_request_error"``...)."""
        kind = self.error.get("type")
        return kind if isinstance(kind, str) else None

    @property
    def metadata(self) -> dict[str, Any] | None:
        """OpenRouter's ``metadata`` (the upstream provider's name and raw error...)."""
        metadata = self.error.get("metadata")
        return metadata if isinstance(metadata, dict) else None

    @property
    def implied_status(self) -> int | None:
        """The HTTP status the provider's code implies (see :func:`implied_status`)."""
        return implied_status(self.error)

    @property
    def status_code(self) -> int | None:
        """The HTTP status of the response (a 2xx), when there was one."""
        return None if self.response is None else self.response.status_code


def _error_object(body: object) -> object:
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            return error
        if isinstance(error, str):
            return {"message": error}
    return body


class APIStreamError(ProviderError):
    """The server sent an error event in a stream.

    A chunk carrying an ``error`` object (OpenRouter's mid-stream error, with
    ``finish_reason: "error"``), an ``event: error`` frame, or a choice that ends with
    ``finish_reason: "error"``. ``.partial`` holds what arrived before it. Before the
    first chunk it is retried as :class:`ProviderError` says; after it, never.
    """


class APIResponseValidationError(APIError):
    """A successful status, but a body that cannot be read as an answer.

    The message names what was wrong and where (``choices[0].message: expected an
    object, got str``), instead of a ``KeyError`` from deep inside a library. ``.body``
    holds what came (the parsed JSON, or the text when it was not JSON) and
    ``.response`` the HTTP response (status, headers), when there was one.
    """

    response: httpx.Response | None = None

    def __init__(
        self,
        message: str,
        *,
        request: httpx.Request | None = None,
        body: object = None,
        partial: Any = None,
        response: httpx.Response | None = None,
    ) -> None:
        super().__init__(message, request=request, body=body, partial=partial)
        self.response = response


class ResponseTooLargeError(APIError):
    """The response body exceeded ``Client(max_response_bytes=...)`` and was refused."""


class APIStatusError(APIError):
    """The server answered with an error status.

    Attributes:
        status_code: The HTTP status.
        request_id: The server's ``x-request-id``, to quote to its operator.
        response: The :class:`httpx.Response` (its body already read).
        headers: The response headers.
    """

    status_code: int
    request_id: str | None
    response: httpx.Response | None
    headers: httpx.Headers

    def __init__(
        self,
        message: str,
        *,
        response: httpx.Response,
        body: object = None,
        request: httpx.Request | None = None,
    ) -> None:
        super().__init__(message, request=request, body=body)
        self.response = response
        self.status_code = response.status_code
        self.headers = response.headers
        self.request_id = response.headers.get("x-request-id")

    @property
    def code(self) -> str | None:
        """The machine-readable ``error.code`` of the body (``"insufficient_quota"``...).

        A number (OpenRouter and llama.cpp send the status again) is given as its text
        (``"429"``); the value as sent is in ``body``.
        """
        if isinstance(self.body, dict):
            error = self.body.get("error")
            if isinstance(error, dict):
                code = error.get("code")
                if isinstance(code, str):
                    return code
                if isinstance(code, int) and not isinstance(code, bool):
                    return str(code)
        return None


class BadRequestError(APIStatusError):
    """400: the request was malformed or had a wrong parameter."""


class AuthenticationError(APIStatusError):
    """401: the API key is missing, wrong or revoked."""


class PermissionDeniedError(APIStatusError):
    """403: the key may not use this model or endpoint."""


class NotFoundError(APIStatusError):
    """404: no such model or endpoint."""


class ConflictError(APIStatusError):
    """409: the request conflicts with the server's state (retried: usually passing)."""


class UnprocessableEntityError(APIStatusError):
    """422: well-formed, but the server cannot process it."""


class RateLimitError(APIStatusError):
    """429: too many requests or tokens; or, with ``code == "insufficient_quota"``, no credit."""


class InternalServerError(APIStatusError):
    """500 and above: the server failed (500, 502, 503, 504 are retried)."""


_STATUS_ERRORS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}


def status_error_class(status_code: int) -> type[APIStatusError]:
    """The exception class for an error status."""
    if status_code >= 500:
        return InternalServerError
    return _STATUS_ERRORS.get(status_code, APIStatusError)
