"""`trioclient serve`: run the embedded server from a terminal.

    python -m trioclient.testing --port 8000 --rpm 60 --latency lognormal:0.3,0.5 --tps 40

prints `serving on http://127.0.0.1:8000/v1` and serves until Ctrl-C. Stopping with
Ctrl-C is the normal way to end a server, so it exits 0 (after a one-line note),
not 130: a script that runs the server and then stops it has not failed.
"""

from __future__ import annotations

import argparse
import functools
import sys

import trio

from ._config import FAULT_KINDS, FaultParams, ServerConfig, parse_distribution

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # One clear line, not argparse's usage block plus the message.
        self.exit(2, f"{self.prog}: error: {message}\n")


def _parse_fault(text: str) -> tuple[str, float]:
    name, sep, probability = text.partition("=")
    if name not in FAULT_KINDS:
        raise argparse.ArgumentTypeError(
            f"unknown fault {name!r} (known: {', '.join(FAULT_KINDS)})"
        )
    if not sep:
        return name, 1.0
    try:
        value = float(probability)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad probability in {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"probability in {text!r} must be in [0, 1]")
    return name, value


def _distribution(text: str) -> object:
    try:
        return parse_distribution(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be in 0..65535, got {value}")
    return value


def build_parser(prog: str = "trioclient serve") -> argparse.ArgumentParser:
    """The argument parser (separate so `trioclient serve --help` can reuse it)."""
    parser = _Parser(
        prog=prog,
        description="Run an OpenAI-compatible chat-completions server that simulates "
        "latency, rate limits and faults. Stop it with Ctrl-C (exit code 0).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=_port, default=8000, help="port to bind; 0 picks a free one (default 8000)"
    )
    parser.add_argument("--api-key", help="the only accepted bearer key (default: accept any key)")
    parser.add_argument("--rpm", type=_positive_int, help="requests per minute per API key")
    parser.add_argument("--tpm", type=_positive_int, help="tokens per minute per API key")
    parser.add_argument(
        "--latency",
        type=_distribution,
        default=None,
        help="time to first token in seconds: 0.2, uniform:0.1,0.3 or lognormal:0.2,0.5",
    )
    parser.add_argument(
        "--tps",
        type=_distribution,
        default=None,
        help="tokens per second after the first (same forms as --latency; default unpaced)",
    )
    parser.add_argument(
        "--fault",
        type=_parse_fault,
        action="append",
        default=[],
        metavar="KIND[=PROB]",
        help="inject a fault with this probability per chat request (default 1.0); "
        f"repeatable. Kinds: {', '.join(FAULT_KINDS)}",
    )
    parser.add_argument(
        "--stall-seconds", type=float, default=None, help="how long stall faults sleep"
    )
    parser.add_argument(
        "--answer-tokens", type=_positive_int, help="tokens per answer (default 20-40 by prompt)"
    )
    parser.add_argument(
        "--insufficient-quota", action="store_true", help="answer every chat request with 429"
    )
    parser.add_argument("--seed", type=int, help="seed for latency samples and fault dice")
    return parser


def _config_from(args: argparse.Namespace) -> ServerConfig:
    changes: dict[str, object] = {}
    if args.latency is not None:
        changes["ttft"] = args.latency
    if args.tps is not None:
        changes["tps"] = args.tps
    if args.stall_seconds is not None:
        changes["fault_params"] = FaultParams(stall_seconds=args.stall_seconds)
    return ServerConfig(
        host=args.host,
        port=args.port,
        api_key=args.api_key,
        rpm=args.rpm,
        tpm=args.tpm,
        answer_tokens=args.answer_tokens,
        insufficient_quota=args.insufficient_quota,
        faults=dict(args.fault),
        seed=args.seed,
        **changes,  # type: ignore[arg-type]
    )


async def _run(config: ServerConfig) -> None:
    from ._server import serve

    async with trio.open_nursery() as nursery:
        server = await nursery.start(functools.partial(serve, config))
        print(f"serving on {server.base_url}", flush=True)


def _only(error: BaseException, kind: type[BaseException]) -> bool:
    """Whether `error` is `kind`, or a group (from a nursery) made only of `kind`."""
    if isinstance(error, BaseExceptionGroup):
        return error.split(kind)[1] is None
    return isinstance(error, kind)


def main(argv: list[str] | None = None) -> int:
    """Parse `argv`, serve until Ctrl-C, return the exit code.

    Exit codes: 0 when stopped with Ctrl-C (the normal way to stop a server), 1 when
    the address cannot be bound, 2 for bad arguments.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = _config_from(args)
    except (TypeError, ValueError) as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    try:
        trio.run(_run, config)
    except BaseException as error:
        # Errors cross the serving nurseries, so they arrive as exception groups.
        if _only(error, KeyboardInterrupt):
            print("server stopped (Ctrl-C)", file=sys.stderr, flush=True)
            return 0
        if _only(error, OSError):
            print(
                f"{parser.prog}: error: cannot serve on {config.host}:{config.port}: "
                f"{_first_message(error)}",
                file=sys.stderr,
            )
            return 1
        raise
    return 0


def _first_message(error: BaseException) -> str:
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return str(error)
