"""Which endpoint a command talks to, and with which key."""

from __future__ import annotations

import os
from typing import Any

import trioclient

from ._errors import CommandError

__all__ = ["PLACEHOLDER_KEY", "client_options", "environment_key"]

#: Sent to a ``--base-url`` endpoint when no key is set: local servers (``trioclient
#: serve``, vLLM, llama.cpp) usually accept any key, and a server that does not says 401.
PLACEHOLDER_KEY = "no-key-set"


def environment_key() -> str | None:
    """``XAI_API_KEY``, else ``OPENAI_API_KEY``, else ``None``."""
    return os.environ.get("XAI_API_KEY") or os.environ.get("OPENAI_API_KEY") or None


def client_options(base_url: str | None, timeout: float | None) -> dict[str, Any]:
    """Keyword arguments for :class:`trioclient.Client` from the command's options.

    Raises:
        CommandError: no key and no endpoint other than the real API.
    """
    base_url = base_url or os.environ.get("TRIOCLIENT_BASE_URL") or None
    key = environment_key()
    if key is None:
        if base_url is None:
            raise CommandError(
                "no API key: set XAI_API_KEY (or OPENAI_API_KEY), or point --base-url at "
                "an OpenAI-compatible server such as `trioclient serve` "
                "(`trioclient demo` runs offline without one)"
            )
        key = PLACEHOLDER_KEY
    options: dict[str, Any] = {"api_key": key, "base_url": base_url}
    if timeout is not None:
        # --timeout bounds an attempt first byte to last (a bare number would bound
        # each wait instead, as in the openai SDK).
        options["timeout"] = trioclient.Timeout(total=timeout)
    return options
