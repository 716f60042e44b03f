"""``trioclient batch INPUT -o OUTPUT``: the durable JSONL runner, from a terminal.

The work is :class:`trioclient._batch_file.BatchFileRunner`'s: each result is written
as one whole line the moment its request ends, and re-running the same command skips
what OUTPUT already answers. This module adds what a terminal needs: a check that the
endpoint is reachable and accepts the key *before* the first request (so a typo in the
URL is one line, not ten thousand error records), a live progress display, a summary
line, and a note on Ctrl-C of what was kept and how to resume.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from ._endpoint import client_options
from ._errors import EXIT_FAILED, EXIT_OK, CommandError, error_line, run_command
from ._progress import LiveProgress, Snapshot

if TYPE_CHECKING:
    from trioclient import Client, RedisBudget
    from trioclient._batch_file import BatchFileRunner, BatchFileSummary
    from trioclient._batch_results import BatchProgress

__all__ = ["run"]

PREFLIGHT_TIMEOUT = 15.0


async def preflight(client: Client) -> None:
    """Fail fast, with one line, if the endpoint is unreachable or refuses the key.

    ``client.models.list()`` (``GET {base_url}/models``) is free on the OpenAI-compatible
    APIs and needs the key, so it tells both things apart without spending a completion.
    It goes through the client itself (its transport or ``http_client``, its headers),
    once, without retries. Any answer other than 401/403 (a server without ``/models``
    says 404) lets the batch go ahead.

    Raises:
        CommandError: the endpoint cannot be reached, or refuses the key.
    """
    import trio

    from trioclient import APIConnectionError, APIError, APIStatusError, Timeout

    url = client.base_url
    where = f"{url.scheme}://{url.netloc.decode('ascii', 'replace')}"
    quick = client.with_options(
        max_retries=0, timeout=Timeout(total=PREFLIGHT_TIMEOUT, connect=PREFLIGHT_TIMEOUT)
    )
    try:
        with trio.move_on_after(PREFLIGHT_TIMEOUT) as scope:
            await quick.models.list()
        if scope.cancelled_caught:
            raise CommandError(f"cannot reach {where}: no answer within {PREFLIGHT_TIMEOUT:g} s")
    except APIStatusError as exc:
        if exc.status_code in (401, 403):
            raise CommandError(
                f"the server refused the API key ({exc.status_code}): check XAI_API_KEY "
                f"(or OPENAI_API_KEY) for {where}; nothing was sent"
            ) from None
    except APIConnectionError as exc:
        detail = str(exc.__cause__ or exc) or type(exc).__name__
        if "refused" in detail.lower():
            detail = "connection refused (is the server running, on that port?)"
        raise CommandError(f"cannot reach {where}: {detail}") from None
    except APIError:
        pass  # an answer, if not a model list: the endpoint is there


def _snapshot(runner: BatchFileRunner, latest: list[BatchProgress]) -> Snapshot:
    summary = runner.summary()
    progress = latest[-1] if latest else None
    to_do = summary.total - summary.skipped_already_done
    return Snapshot(
        done=summary.succeeded + summary.failed,
        total=to_do if summary.total else None,
        failed=summary.failed,
        in_flight=progress.in_flight if progress else 0,
        rate_limited=progress.rate_limited if progress else 0,
        tokens=(progress.prompt_tokens + progress.completion_tokens) if progress else 0,
    )


def summary_line(summary: BatchFileSummary) -> str:
    """``98 succeeded, 2 failed, 0 skipped (already done), 0 remaining -> out.jsonl``."""
    return (
        f"{summary.succeeded} succeeded, {summary.failed} failed, "
        f"{summary.skipped_already_done} skipped (already done), "
        f"{summary.remaining} remaining -> {summary.output}"
    )


def _merge(args: argparse.Namespace) -> int:
    """``trioclient batch INPUT -o OUTPUT --merge``: no network, no key."""
    from trioclient._batch_file import BatchFileError, lock_output
    from trioclient._shards import MergeError, merge_parts

    if args.output == "-":
        error_line("--merge needs the file OUTPUT whose parts to merge, not '-'")
        return EXIT_FAILED
    source = sys.stdin.buffer if args.input == "-" else args.input
    try:
        merged = merge_parts(source, args.output, lock=lock_output)
    except (MergeError, BatchFileError) as exc:
        error_line(str(exc))
        return EXIT_FAILED
    except OSError as exc:
        error_line(f"cannot merge into {args.output}: {exc.strerror or exc}")
        return EXIT_FAILED
    print(
        f"trioclient batch: merged {merged.parts} parts: {merged.succeeded} succeeded, "
        f"{merged.failed} failed -> {merged.output}",
        file=sys.stderr,
        flush=True,
    )
    return EXIT_FAILED if merged.failed else EXIT_OK


def shared_budget(args: argparse.Namespace, options: dict[str, Any]) -> RedisBudget | None:
    """The ``--redis`` budget, or ``None``; bad options raise :class:`CommandError`.

    The default key is a digest of the endpoint and the API key: workers on the same
    key share a budget without being told a name, and the key itself is not in Redis.
    """
    if args.redis is None:
        if args.redis_key is not None:
            raise CommandError("--redis-key needs --redis URL")
        return None
    if args.rpm is None and args.tpm is None:
        raise CommandError("--redis shares a budget: give it --rpm N, --tpm N or both")
    import hashlib

    from trioclient import DEFAULT_BASE_URL, RedisBudget

    key = args.redis_key
    if key is None:
        material = f"{options['base_url'] or DEFAULT_BASE_URL}\n{options['api_key']}"
        key = "trioclient:budget:" + hashlib.sha256(material.encode()).hexdigest()[:16]
    try:
        return RedisBudget(
            args.redis,
            key=key,
            rpm=args.rpm,
            tpm=args.tpm,
            on_unreachable=args.redis_unreachable,
        )
    except ValueError as exc:
        raise CommandError(f"--redis: {exc}") from None


def run(args: argparse.Namespace) -> int:
    """Run ``trioclient batch`` with parsed ``args``; return the exit code."""
    state: dict[str, Any] = {}
    if args.input != "-":
        import os

        # Before any network: a typo in the path is the commonest mistake of all.
        if not os.path.exists(args.input):
            error_line(f"no such file: {args.input}")
            return EXIT_FAILED
        if os.path.isdir(args.input):
            error_line(f"is a directory, not a file: {args.input}")
            return EXIT_FAILED

    if args.merge:
        return _merge(args)
    output = args.output
    if args.shard is not None:
        if output == "-":
            error_line("--shard needs a file OUTPUT (its part is written beside it), not '-'")
            return EXIT_FAILED
        from trioclient._shards import Shard

        output = Shard(*args.shard).part(output)

    async def main() -> int:
        import trio

        import trioclient
        from trioclient._batch_file import BatchFileRunner

        latest: list[BatchProgress] = []

        def on_progress(progress: BatchProgress) -> None:
            latest[:] = [progress]

        options = client_options(args.base_url, None)
        budget = shared_budget(args, options)
        async with trioclient.Client(**options, budget=budget) as client:
            await preflight(client)
            if budget is not None and budget.on_unreachable == "error":
                await budget.ping()
            if getattr(args, "remote", False):
                return await _run_remote(args, client, state)
            runner = BatchFileRunner(
                client,
                args.input,
                output,
                model=args.model,
                max_concurrent=args.max_concurrent,
                rpm=None if budget else args.rpm,
                tpm=None if budget else args.tpm,
                timeout=None if args.timeout is None else trioclient.Timeout(total=args.timeout),
                retry_failed=args.retry_failed,
                on_progress=on_progress,
                shard=args.shard,
            )
            state["runner"] = runner
            progress = LiveProgress("batch", lambda: _snapshot(runner, latest))
            # A BatchFileError (duplicate ids, unreadable input, a failed write) leaves
            # this nursery in a group; run_command prints every leaf as one line.
            async with trio.open_nursery() as nursery:
                nursery.start_soon(progress.run)
                summary = await runner.run()
                nursery.cancel_scope.cancel()
        print(f"trioclient batch: {summary_line(summary)}", file=sys.stderr, flush=True)
        if summary.input_errors:
            lines = "line was" if summary.input_errors == 1 else "lines were"
            print(
                f"trioclient batch: {summary.input_errors} input {lines} not a valid request; "
                "the error records in the output name the line numbers",
                file=sys.stderr,
                flush=True,
            )
        if summary.failed:
            print(
                "trioclient batch: the failed requests have error records in the output; "
                "add --retry-failed to send them again",
                file=sys.stderr,
                flush=True,
            )
            return EXIT_FAILED
        return EXIT_OK

    def on_interrupt() -> str:
        runner: BatchFileRunner | None = state.get("runner")
        if runner is None:
            return "nothing was sent"
        batch_ids = getattr(runner, "batch_ids", None)
        if batch_ids and not args.cancel_on_interrupt:
            return (
                f"the remote batch ({', '.join(batch_ids)}) keeps running; run the same "
                "command to collect its results (add --cancel-on-interrupt to cancel it)"
            )
        s = runner.summary()
        written = s.skipped_already_done + s.succeeded + s.failed
        return (
            f"{written} results written to {s.output}; {s.remaining} remain: "
            "run the same command to resume"
        )

    return run_command(main, on_interrupt=on_interrupt)


async def _run_remote(args: argparse.Namespace, client: Client, state: dict[str, Any]) -> int:
    """``--remote``: the same file on the provider's Batch API, polled with a live display."""
    import trio

    from trioclient._remote_batch import RemoteBatchProgress, RemoteBatchRunner

    latest: list[RemoteBatchProgress] = []
    runner = RemoteBatchRunner(
        client,
        args.input,
        args.output,
        model=args.model,
        provider=args.provider,
        poll_interval=args.poll_interval,
        cancel_on_interrupt=args.cancel_on_interrupt,
        retry_failed=args.retry_failed,
        on_progress=lambda progress: latest.__setitem__(slice(None), [progress]),
    )
    state["runner"] = runner

    def snapshot() -> Snapshot:
        progress = latest[-1] if latest else None
        return Snapshot(
            done=progress.done if progress else 0,
            total=progress.total if progress else None,
            failed=progress.failed if progress else 0,
            in_flight=0,
            rate_limited=0,
            tokens=0,
        )

    display = LiveProgress("batch --remote", snapshot)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(display.run)
        summary = await runner.run()
        nursery.cancel_scope.cancel()
    print(f"trioclient batch --remote: {summary_line(summary)}", file=sys.stderr, flush=True)
    if summary.failed:
        print(
            "trioclient batch --remote: the failed requests have error records in the "
            "output; add --retry-failed to send them again",
            file=sys.stderr,
            flush=True,
        )
        return EXIT_FAILED
    return EXIT_OK
