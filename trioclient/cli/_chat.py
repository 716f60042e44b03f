"""``trioclient chat "prompt"``: one question, the answer streamed to stdout as it arrives."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ._endpoint import client_options
from ._errors import EXIT_FAILED, EXIT_OK, CommandError, error_line, run_command

__all__ = ["run"]


def _prompt(text: str) -> str:
    if text == "-":
        text = sys.stdin.read()
    if not text.strip():
        raise CommandError("the prompt is empty (pass the question, or '-' to read stdin)")
    return text


def _messages(args: argparse.Namespace, prompt: str) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    if args.system:
        messages.append({"role": "system", "content": args.system})
    messages.append({"role": "user", "content": prompt})
    return messages


def _write(text: str) -> None:
    # Flushed per chunk: the point of streaming is that the reader sees text at once.
    sys.stdout.write(text)
    sys.stdout.flush()


async def _chat(args: argparse.Namespace, prompt: str) -> int:
    import trioclient

    params: dict[str, Any] = {}
    if args.max_tokens is not None:
        params["max_tokens"] = args.max_tokens
    async with trioclient.Client(**client_options(args.base_url, args.timeout)) as client:
        messages = _messages(args, prompt)
        if args.no_stream:
            answer = await client.chat.completions.create(
                model=args.model, messages=messages, **params
            )
            _write((answer.content or "") + "\n")
            return EXIT_OK
        async with client.chat.completions.stream(
            model=args.model, messages=messages, **params
        ) as stream:
            async for chunk in stream:
                if chunk.content:
                    _write(chunk.content)
        _write("\n")
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    """Run ``trioclient chat`` with parsed ``args``; return the exit code."""
    try:
        prompt = _prompt(args.prompt)
    except CommandError as exc:
        error_line(str(exc))
        return EXIT_FAILED

    async def main() -> int:
        return await _chat(args, prompt)

    return run_command(main, on_interrupt=lambda: "the answer above is incomplete")
