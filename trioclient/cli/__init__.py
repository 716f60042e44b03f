"""The ``trioclient`` command line (also ``python -m trioclient``).

::

    trioclient demo                       # the seeds' scenarios against an embedded server
    trioclient chat "Tell me a joke"      # stream one answer to stdout
    trioclient batch in.jsonl -o out.jsonl  # the durable JSONL runner (resumable)
    trioclient serve --rpm 60             # the embedded server, for your own tests

This module stays light: it builds the argument parser and imports a command's module
only when that command runs (rich, for instance, loads only for a live progress
display). ``import trioclient`` never imports this package at all.
"""

from __future__ import annotations

import sys

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Run the ``trioclient`` command line and return its exit code.

    Args:
        argv: The arguments after the program name (default: ``sys.argv[1:]``).

    Returns:
        0 on success, 1 after an error (printed as one line on stderr), 2 for bad
        usage, 130 after Ctrl-C.
    """
    args_list = sys.argv[1:] if argv is None else list(argv)
    if args_list and args_list[0] == "serve":
        # The embedded server owns its options; hand them over untouched.
        from ..testing._cli import main as serve_main

        return _exit_code(serve_main, args_list[1:])

    from ._parser import build_parser

    parser = build_parser()
    try:
        args = parser.parse_args(args_list)
    except SystemExit as exit_:
        return _code(exit_.code)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2

    import importlib

    command = importlib.import_module(f"{__name__}._{args.command}")
    code: int = command.run(args)
    return code


def _exit_code(fn: object, argv: list[str]) -> int:
    try:
        return int(fn(argv))  # type: ignore[operator]
    except SystemExit as exit_:
        return _code(exit_.code)


def _code(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1
