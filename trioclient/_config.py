"""Configuration values: timeouts, and where the key and the endpoint come from.

Configuration is values, not a dozen loose keyword arguments: a :class:`Timeout` is
frozen, so one can be shared by many clients and changed with :func:`attrs.evolve`.
"""

from __future__ import annotations

import math
import os
from typing import Any

import attrs
import httpx

__all__ = ["DEFAULT_BASE_URL", "Timeout"]

DEFAULT_BASE_URL = "https://api.x.ai/v1"

#: Seconds an idle keep-alive connection may wait to be reused (httpcore's default).
DEFAULT_KEEPALIVE_EXPIRY = 5.0


def check_keepalive_expiry(value: float | None) -> float:
    """``keepalive_expiry`` as a number of seconds (``None``: no limit, infinity)."""
    if value is None:
        return math.inf
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"keepalive_expiry must be a number of seconds or None, got {value!r}")
    if not value >= 0:
        raise ValueError(f"keepalive_expiry must be >= 0 seconds or None, got {value!r}")
    return float(value)


def _positive_or_none(_: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(
            f"Timeout.{attribute.name} must be a number of seconds or None, got {value!r}"
        )
    if not value > 0 or math.isnan(value):
        raise ValueError(f"Timeout.{attribute.name} must be > 0 seconds or None, got {value!r}")


@attrs.frozen
class Timeout:
    """The deadlines of one attempt, in seconds (``None``: no such deadline).

    Each is a trio cancel scope inside the attempt's own task, so a deadline that runs
    out cancels exactly that attempt, which then counts as a retryable
    :class:`~trioclient.APITimeoutError`. A deadline *you* set around a call
    (``with trio.move_on_after(5): await client...``) bounds the whole call, retries and
    backoff included, and trioclient never sleeps past it.

    The defaults suit reasoning models, which may think for many minutes before the first
    byte of a non-streamed answer, and stay silent for minutes inside a stream.

    Attributes:
        total: The whole attempt, from sending the request to the last byte of the answer
            (for a stream: to ``[DONE]``).
        connect: Opening the TCP (and TLS) connection. Connections are shared by all
            of a client's requests, so this is the client's own setting: the
            ``connect`` of a per-call ``timeout=`` is not used.
        first_byte: From sending the request until the response headers arrive (for a
            stream: until its first event). ``None`` leaves it to ``total``.
        idle: The longest silence allowed while a body or stream is arriving.
    """

    total: float | None = attrs.field(default=3600.0, validator=_positive_or_none)
    connect: float | None = attrs.field(default=10.0, validator=_positive_or_none)
    first_byte: float | None = attrs.field(default=None, validator=_positive_or_none)
    idle: float | None = attrs.field(default=600.0, validator=_positive_or_none)

    @classmethod
    def coerce(cls, value: Timeout | float | None) -> Timeout:
        """A :class:`Timeout` from a Timeout, a number or ``None``.

        A number has the openai SDK's meaning (httpx's): it bounds **each wait** —
        connecting, the first byte, every gap between bytes — and not the whole answer,
        so ``timeout=1`` never cuts a stream that sends something every quarter second,
        while a stream silent for more than a second fails with
        :class:`~trioclient.APITimeoutError`. ``None`` means no deadline at all. For a
        bound on the whole answer, say ``Timeout(total=...)``.
        """
        if isinstance(value, Timeout):
            return value
        if value is None:
            return cls(total=None, connect=None, first_byte=None, idle=None)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(
                f"timeout must be a Timeout, a number of seconds or None, got {value!r}"
            )
        seconds = float(value)
        return cls(total=None, connect=seconds, first_byte=seconds, idle=seconds)


def resolve_api_key(api_key: str | None) -> str:
    """The explicit key, else ``XAI_API_KEY``, else ``OPENAI_API_KEY``."""
    if api_key is None:
        api_key = os.environ.get("XAI_API_KEY") or os.environ.get("OPENAI_API_KEY")
        if not api_key:
            raise ValueError(
                "no API key: pass Client(api_key=...) or set XAI_API_KEY (or OPENAI_API_KEY)"
            )
    if not isinstance(api_key, str):
        raise TypeError(f"api_key must be a string, got {type(api_key).__name__}")
    if not api_key.strip():
        raise ValueError("api_key is empty")
    if not api_key.isascii() or not api_key.isprintable():
        # A header carries ASCII only, and a line break would be a header injection.
        # Never echo the key: a pasted curly quote is the usual culprit.
        raise ValueError(
            "api_key contains a non-ASCII or control character (a pasted quote or line break?)"
        )
    return api_key


#: The public providers' API domains (and their subdomains), reached over https only.
#: A key for one of them is a real, billed credential; a self-hosted server (vLLM in
#: docker compose, a LAN box) is reached over plain http like with the openai SDK.
PROVIDER_DOMAINS = frozenset(
    {
        "x.ai",
        "openai.com",
        "openai.azure.com",
        "openrouter.ai",
        "googleapis.com",
        "mistral.ai",
        "anthropic.com",
        "groq.com",
        "together.xyz",
        "together.ai",
        "deepseek.com",
        "fireworks.ai",
        "perplexity.ai",
        "cohere.com",
        "cohere.ai",
        "deepinfra.com",
        "cerebras.ai",
        "api.nvidia.com",
        "huggingface.co",
        "moonshot.ai",
        "moonshot.cn",
        "dashscope.aliyuncs.com",
    }
)


def is_provider_host(host: str) -> bool:
    """Whether ``host`` is (under) one of :data:`PROVIDER_DOMAINS`, case and a trailing
    dot ignored."""
    host = host.lower().rstrip(".")
    while True:
        if host in PROVIDER_DOMAINS:
            return True
        _, dot, host = host.partition(".")
        if not dot:
            return False


def resolve_base_url(base_url: str | httpx.URL | None, *, allow_insecure_http: bool) -> httpx.URL:
    """The explicit URL, else ``TRIOCLIENT_BASE_URL``, else the xAI API.

    Plain ``http://`` works for any host (a self-hosted server: a docker-compose
    service name, a LAN host running vLLM), except a public provider's API host
    (:data:`PROVIDER_DOMAINS`): the key travels in a header, and a real provider key
    must not cross the network in clear text. ``allow_insecure_http=True`` lifts that
    last rule too.
    """
    if base_url is None:
        base_url = os.environ.get("TRIOCLIENT_BASE_URL") or DEFAULT_BASE_URL
    if not isinstance(base_url, str | httpx.URL):
        raise TypeError(f"base_url must be a string, got {type(base_url).__name__}")
    try:
        url = httpx.URL(base_url)
    except httpx.InvalidURL as exc:
        raise ValueError(f"base_url {str(base_url)!r} is not a valid URL: {exc}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(
            f"base_url {str(base_url)!r} is not an http(s) URL with a host "
            "(expected something like 'https://api.x.ai/v1')"
        )
    if url.query or url.fragment:
        raise ValueError(f"base_url {str(base_url)!r} must not have a query or fragment")
    if url.scheme == "http" and not allow_insecure_http and is_provider_host(url.host):
        raise ValueError(
            f"base_url {str(url)!r} is plain http:// to a public provider's API host: the "
            "API key would cross the network unencrypted. Use "
            f"{str(url.copy_with(scheme='https', port=None if url.port == 80 else url.port))!r} (or pass allow_insecure_http=True "
            "if you really mean it)."
        )
    path = url.raw_path.rstrip(b"/")
    return url.copy_with(raw_path=path + b"/")
