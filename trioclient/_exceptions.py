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
    ├── APIStreamError                  the server sent an error event in the middle of a stream
    ├── APIResponseValidationError      a 2xx body that is not what the API promises
    └── ResponseTooLargeError           a body larger than ``Client(max_response_bytes=...)``

Every error carries the :class:`httpx.Request` it belongs to (``.request``, with the
``Authorization`` header never shown in any message), and errors raised by a stream
carry what arrived before the failure in ``.partial``, so a cut answer is never
mistaken for a whole one and never lost either.

Bad arguments are not API errors: they raise :class:`ValueError` or :class:`TypeError`
before anything is sent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from ._models import ChatCompletion
    from ._responses import ResponseObject

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
        partial: ChatCompletion | ResponseObject | None = None,
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


class APIStreamError(APIError):
    """The server sent an error event (``data: {"error": ...}``) in the middle of a stream."""


class APIResponseValidationError(APIError):
    """A successful status, but a body that is not what the API promises.

    The message names what was wrong and where (``choices[0].message: expected an
    object, got str``), instead of a ``KeyError`` from deep inside a library.
    """


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
        """The machine-readable ``error.code`` of the body (``"insufficient_quota"``...)."""
        if isinstance(self.body, dict):
            error = self.body.get("error")
            if isinstance(error, dict):
                code = error.get("code")
                return code if isinstance(code, str) else None
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
