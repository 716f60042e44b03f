"""How a command ends: one clear line on stderr and an exit code, never a traceback.

Everything a user can cause (a missing file, bad JSONL, an unreachable server, a wrong
key, no key at all) is an :class:`Exception` somewhere below the command. Inside trio
it may arrive wrapped in an :class:`ExceptionGroup` (a nursery gathers what its tasks
raised), so :func:`describe` reads every leaf of the group and says them all in one
line, rather than guessing which one "really" happened.

Ctrl-C is not an error: trio delivers it as :class:`KeyboardInterrupt` to the main
task, the nurseries cancel their children on the way out, and :func:`run_command` turns
it into exit code 130 (the shell's convention, 128 + SIGINT) after printing the note
the command left about what was kept.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Awaitable, Callable
from typing import TextIO

import trio

from .. import _exceptions as api

__all__ = ["CommandError", "describe", "error_line", "redact", "run_command"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class CommandError(Exception):
    """A problem the user can fix, already worded for them (the CLI prints it as is)."""


def _secrets() -> list[str]:
    # Keys that might be echoed back in a server's error text; never print them.
    return [
        value
        for name in ("XAI_API_KEY", "OPENAI_API_KEY")
        if (value := os.environ.get(name)) and len(value) >= 4
    ]


def redact(text: str) -> str:
    """``text`` with any API key from the environment replaced by ``[redacted]``."""
    for secret in _secrets():
        text = text.replace(secret, "[redacted]")
    return text


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        out: list[BaseException] = []
        for inner in exc.exceptions:
            out.extend(_leaves(inner))
        return out
    return [exc]


def _one(exc: BaseException) -> str:
    """The user-facing sentence for one (non-group) exception."""
    if isinstance(exc, CommandError):
        return str(exc)
    if isinstance(exc, api.AuthenticationError):
        return (
            "the server refused the API key (401): check XAI_API_KEY "
            f"(or OPENAI_API_KEY) for {_where(exc)}"
        )
    if isinstance(exc, api.PermissionDeniedError):
        return f"the API key may not do this (403) at {_where(exc)}: {_message(exc)}"
    if isinstance(exc, api.APITimeoutError):
        return f"timed out: {_message(exc)} (raise --timeout if the model needs longer)"
    if isinstance(exc, api.APIConnectionError):
        return f"cannot reach {_where(exc)}: {_connection_detail(exc)}"
    if _is_ours(exc):
        # trioclient's own errors (APIError, BatchFileError, BatchError...) are worded
        # for a person already.
        return _message(exc)
    if isinstance(exc, FileNotFoundError):
        return f"no such file: {exc.filename}"
    if isinstance(exc, IsADirectoryError):
        return f"is a directory, not a file: {exc.filename}"
    if isinstance(exc, PermissionError):
        return f"permission denied: {exc.filename}"
    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.filename}: {exc.strerror or exc}"
    if isinstance(exc, ValueError | TypeError | OSError):
        return str(exc)
    return f"internal error: {type(exc).__name__}: {exc} (please report this)"


def _where(exc: api.APIError) -> str:
    request = exc.request
    if request is None:
        return "the server"
    url = request.url
    return f"{url.scheme}://{url.netloc.decode('ascii', 'replace')}"


_CONNECTION_HINTS = (
    ("connection refused", "connection refused (is the server running, on that port?)"),
    ("name or service not known", "host name not found"),
    ("nodename nor servname", "host name not found"),
    ("temporary failure in name resolution", "host name not found (offline?)"),
    ("certificate verify failed", "the TLS certificate was not accepted"),
)


def _connection_detail(exc: api.APIConnectionError) -> str:
    # The transport's message keeps every layer (useful in a log); a terminal user
    # needs the one fact they can act on.
    text = _message(exc)
    lowered = text.lower()
    for needle, hint in _CONNECTION_HINTS:
        if needle in lowered:
            return hint
    return text


def _message(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def describe(exc: BaseException) -> str:
    """One line saying what went wrong, for every leaf of ``exc`` (deduplicated)."""
    lines: list[str] = []
    for leaf in _leaves(exc):
        line = _one(leaf)
        if line not in lines:
            lines.append(line)
    text = lines[0] if len(lines) == 1 else "; ".join(lines)
    return redact(" ".join(text.split()))


def _is_ours(exc: BaseException) -> bool:
    return isinstance(exc, api.APIError) or type(exc).__module__.split(".")[0] == "trioclient"


def _is_expected(exc: BaseException) -> bool:
    return all(
        isinstance(leaf, CommandError | OSError | ValueError | TypeError) or _is_ours(leaf)
        for leaf in _leaves(exc)
    )


def _only_interrupts(exc: BaseException) -> bool:
    leaves = _leaves(exc)
    return (
        bool(leaves)
        and all(isinstance(leaf, KeyboardInterrupt | trio.Cancelled) for leaf in leaves)
        and any(isinstance(leaf, KeyboardInterrupt) for leaf in leaves)
    )


def error_line(message: str, stream: TextIO | None = None) -> None:
    """Print ``trioclient: error: <message>`` (one line, key redacted) on stderr."""
    stream = sys.stderr if stream is None else stream
    print(f"trioclient: error: {redact(message)}", file=stream, flush=True)


def run_command(
    main: Callable[[], Awaitable[int]],
    *,
    on_interrupt: Callable[[], str | None] | None = None,
) -> int:
    """Run ``main`` under :func:`trio.run` and turn whatever ends it into an exit code.

    Args:
        main: The command's body; returns its exit code.
        on_interrupt: Called after Ctrl-C, once everything has unwound (so files are
            flushed and closed); returns a note for stderr about what was kept.

    Returns:
        ``main``'s code; 1 after an error (printed as one line); 130 after Ctrl-C.
    """
    try:
        return trio.run(main)
    except KeyboardInterrupt:
        pass
    except BaseExceptionGroup as group:
        if not _only_interrupts(group):
            return _report(group)
    except Exception as exc:
        return _report(exc)
    note = on_interrupt() if on_interrupt is not None else None
    message = "interrupted (Ctrl-C)"
    if note:
        message += f": {note}"
    print(f"trioclient: {redact(message)}", file=sys.stderr, flush=True)
    return EXIT_INTERRUPTED


def _report(exc: BaseException) -> int:
    if all(isinstance(leaf, BrokenPipeError) for leaf in _leaves(exc)):
        # `trioclient chat ... | head -1`: the reader left, which is not an error. Point
        # stdout at /dev/null so the interpreter's final flush does not complain either.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    if not _is_expected(exc) or os.environ.get("TRIOCLIENT_DEBUG"):
        # A bug of ours, not the user's: one line by default, the traceback on request.
        if os.environ.get("TRIOCLIENT_DEBUG"):
            traceback.print_exception(exc, file=sys.stderr)
        else:
            error_line(describe(exc) + " (set TRIOCLIENT_DEBUG=1 for the traceback)")
            return EXIT_FAILED
    error_line(describe(exc))
    return EXIT_FAILED
