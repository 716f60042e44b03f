"""The argument parser of every command, in one place so ``--help`` is cheap and complete."""

from __future__ import annotations

import argparse
import math

from .._version import __version__

__all__ = ["DEFAULT_MODEL", "build_parser"]

DEFAULT_MODEL = "grok-4"

_ENDPOINT_HELP = (
    "Endpoint: XAI_API_KEY (or OPENAI_API_KEY) is the key and the xAI API the default "
    "endpoint; --base-url (or TRIOCLIENT_BASE_URL) points at any OpenAI-compatible API, "
    "such as one started with `trioclient serve`."
)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (``trioclient chat: error: ...``)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {text!r}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {text!r}")
    return value


def _shard(text: str) -> tuple[int, int]:
    from .._shards import parse_shard

    try:
        shard = parse_shard(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return shard.index, shard.count


def _add_endpoint(parser: argparse.ArgumentParser, *, model_default: str | None) -> None:
    parser.add_argument(
        "--base-url",
        metavar="URL",
        help="an OpenAI-compatible API root, e.g. http://127.0.0.1:8000/v1 "
        "(default: TRIOCLIENT_BASE_URL, then https://api.x.ai/v1)",
    )
    parser.add_argument(
        "--model",
        default=model_default,
        help=f"the model to ask (default: {model_default})"
        if model_default
        else "the model for plain-text prompts and for lines whose body names none",
    )
    parser.add_argument(
        "--timeout",
        type=_seconds,
        metavar="SECONDS",
        help="deadline of one attempt, first byte to last (default 3600: reasoning "
        "models may think for minutes)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``trioclient`` parser with its subcommands (``args.command`` names the one used)."""
    parser = _Parser(
        prog="trioclient",
        description="Chat completions at volume, with Trio's structured concurrency.",
        epilog="Run `trioclient COMMAND --help` for a command's options. " + _ENDPOINT_HELP,
    )
    parser.add_argument("--version", action="version", version=f"trioclient {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    demo = commands.add_parser(
        "demo",
        help="run the seeds' scenarios (offline against an embedded server, by default)",
        description="Run the asyncio seeds' scenarios the trio way: concurrent questions "
        "under a limit, a stream, a burst that meets rate limits, a timeout, a batch with "
        "progress; then a summary. Without XAI_API_KEY and --base-url it starts an "
        "embedded server in-process, so it works offline.",
        epilog=_ENDPOINT_HELP,
    )
    _add_endpoint(demo, model_default=DEFAULT_MODEL)

    chat = commands.add_parser(
        "chat",
        help="ask one question and stream the answer to stdout",
        description="Ask one question and print the answer as it arrives.",
        epilog=_ENDPOINT_HELP,
    )
    chat.add_argument("prompt", help="the question; '-' reads it from stdin")
    _add_endpoint(chat, model_default=DEFAULT_MODEL)
    chat.add_argument("--system", metavar="TEXT", help="a system message to put first")
    chat.add_argument("--max-tokens", type=_positive_int, metavar="N", help="answer length cap")
    chat.add_argument(
        "--no-stream", action="store_true", help="wait for the whole answer, then print it"
    )

    batch = commands.add_parser(
        "batch",
        help="run a JSONL file of requests, durably (re-run the same command to resume)",
        description="Send every request of INPUT and write one result line per request to "
        "OUTPUT as soon as it ends. INPUT is in the OpenAI Batch API format (one "
        '{"custom_id", "method", "url", "body"} per line), or plain text with one prompt '
        "per line (then --model is required). Interrupted? Run the same command again: "
        "requests already answered in OUTPUT are skipped.",
        epilog=_ENDPOINT_HELP,
    )
    batch.add_argument("input", metavar="INPUT", help="requests, JSONL or text; '-' for stdin")
    batch.add_argument(
        "-o", "--output", required=True, metavar="OUTPUT", help="results, JSONL; '-' for stdout"
    )
    batch.add_argument(
        "--max-concurrent",
        type=_positive_int,
        default=16,
        metavar="N",
        help="requests in flight at most (default 16)",
    )
    batch.add_argument("--rpm", type=_positive_int, metavar="N", help="requests per minute budget")
    batch.add_argument("--tpm", type=_positive_int, metavar="N", help="tokens per minute budget")
    batch.add_argument(
        "--redis",
        metavar="URL",
        help="share the --rpm/--tpm budget with every worker using this Redis "
        "(redis://[:password@]host:port/db) and the same --redis-key",
    )
    batch.add_argument(
        "--redis-key",
        metavar="NAME",
        help="the shared budget's Redis key (default: one per endpoint and API key)",
    )
    batch.add_argument(
        "--redis-unreachable",
        choices=("error", "local"),
        default="error",
        help="when Redis cannot be reached: stop with an error (default), or pace this "
        "worker alone, with a warning, until it answers again",
    )
    _add_endpoint(batch, model_default=None)
    batch.add_argument(
        "--retry-failed",
        action="store_true",
        help="re-send the requests whose result in OUTPUT is an error",
    )
    sharding = batch.add_mutually_exclusive_group()
    sharding.add_argument(
        "--shard",
        type=_shard,
        metavar="I/N",
        help="run only shard I of N (1 to N) of INPUT, split by custom_id, into "
        "OUTPUT.part-I-of-N; N workers, one per shard, share the job",
    )
    sharding.add_argument(
        "--merge",
        action="store_true",
        help="merge the finished parts OUTPUT.part-*-of-N into OUTPUT (every custom_id "
        "of INPUT exactly once; nothing is sent)",
    )
    sharding.add_argument(  # one of: a shard, the merge, or the provider's Batch API
        "--remote",
        action="store_true",
        help="run INPUT on the provider's Batch API (cheaper, within 24 h) instead of live; "
        "same OUTPUT format; re-run the same command to collect the results",
    )
    batch.add_argument(
        "--provider",
        choices=("auto", "openai", "xai"),
        default="auto",
        help="with --remote: the Batch API's shape (default: xai for an x.ai URL, else openai)",
    )
    batch.add_argument(
        "--poll-interval",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="with --remote: seconds between status checks (default 30)",
    )
    batch.add_argument(
        "--cancel-on-interrupt",
        action="store_true",
        help="with --remote: Ctrl-C cancels the remote batch (by default it keeps running)",
    )

    # `trioclient serve ...` is handed to the embedded server's own parser before this
    # one runs; the entry here only lists it in `trioclient --help`.
    commands.add_parser(
        "serve",
        help="run the embedded OpenAI-compatible server (see `trioclient serve --help`)",
        add_help=False,
    )
    return parser
