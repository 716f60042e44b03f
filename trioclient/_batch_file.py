"""The durable JSONL runner: a Batch API file in, a Batch API results file out, resumable.

What a line means (parsing requests, building result records) is
:mod:`trioclient._batch_format`; this module reads, writes, resumes and stops.

::

    summary = await run_batch_file(client, "requests.jsonl", "results.jsonl", rpm=1_200)
    print(f"{summary.succeeded} ok, {summary.failed} failed, {summary.remaining} remain")

**Input**, one request a line, in the OpenAI Batch API's format (which xAI's batch upload
also takes)::

    {"custom_id": "q1", "method": "POST", "url": "/v1/chat/completions", "body": {...}}

or plain text, one prompt a line, with ``model=`` (the custom id is then ``line-N``).
The format is decided by the first non-blank line: a line starting with ``{`` means
JSONL. A JSONL body without a ``model`` takes ``model=`` when given.

**Output**, one line per request, in completion order, in the Batch API's output format::

    {"id": "batch_req_...", "custom_id": "q1",
     "response": {"status_code": 200, "request_id": "...", "body": {...}}, "error": null}

A failure has the same shape with ``error: {"code", "message"}`` set, and ``response``
holding the status and error body when the server answered. A bad input line (not JSON,
no ``custom_id``, a ``url`` other than ``/v1/chat/completions``, ``/v1/embeddings`` or
``/v1/responses``: lines may mix them) gets an error record
whose message names its line number (also in ``error.line``); the good lines run anyway.
Duplicate ``custom_id`` values are different: they make "which answer belongs to which
request" ambiguous, so they are reported with their line numbers before anything is
sent, and nothing is.

**Durability.** The output is opened with ``O_APPEND`` and each record is written as one
``os.write`` of the whole line the moment its request ends, so a ``kill -9`` at any
moment loses at most the line being written, never one already written. (A power loss
is another matter: the file is fsynced at the end of a run, not per line.) The writes
happen in a worker thread fed by a bounded queue (:class:`_Writer`), so a slow disk or a
stalled reader of a pipe holds up the writing, never the requests and their deadlines.
An output path that is a named pipe or a device (``/dev/stdout``) is written like a
stream: it is not read back, so there is no resuming from it.

**Resuming** is running the same command again. The runner reads the output first:
it cuts a torn last line back to the last newline, skips every ``custom_id`` already
answered, and sends only the rest, so each ``custom_id`` appears exactly once. Failed
ones are skipped too, unless ``retry_failed=True``: then the output is first rewritten
without their lines (a temporary file, fsynced, then ``os.replace``: atomic, so a crash
leaves either the old file or the new one), and they are sent again. The output is
read line by line (the rewrite streams too), so a resume holds the answered ids, never
the records.

**One run per output.** A run takes a lock on ``OUTPUT.lock`` (``flock``, non-blocking)
before it reads or writes the output; a second run on the same output while the first
runs stops at once with :class:`BatchFileError` naming the holder's pid, instead of
sending every remaining request a second time. The kernel drops the lock with the
process, so a ``kill -9`` leaves nothing stale; the lock file stays.

**Stopping.** A Ctrl-C (``KeyboardInterrupt``) or a cancel stops at once; every finished
result is already on disk, and :meth:`BatchFileRunner.summary` says how many remain. A
write that fails (a full disk, an I/O error) stops the run with :class:`BatchFileError`
naming the file; the lines written before it are intact.

The input is read twice, block by block in a worker thread (once to check ids before
sending anything, once to feed the batch lazily), so memory holds the ids, not the
requests. Standard input, which cannot be read twice, is spooled to a temporary file.
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
import sys
import tempfile
from collections.abc import AsyncIterator, Callable
from typing import IO, TYPE_CHECKING, Any

import attrs
import trio

from . import _endpoints
from ._background import open_background
from ._batch_format import (
    BLOCK,
    BadLine,
    bad_line_record,
    classify_record,
    decode,
    encode_record,
    parse_line,
    plain_id,
    result_record,
    scan,
)
from ._batch_results import BatchProgress
from ._config import Timeout
from ._retry import RetryPolicy
from ._shards import Shard, take_shard

if TYPE_CHECKING:
    from ._client import Client

__all__ = ["BatchFileError", "BatchFileRunner", "BatchFileSummary", "run_batch_file"]

InputArg = str | os.PathLike[str] | IO[str] | IO[bytes]


class BatchFileError(Exception):
    """The batch file cannot be run (duplicate ids, unreadable input, bad arguments) or
    the output cannot be written (``__cause__`` holds the ``OSError``)."""


@attrs.frozen
class BatchFileSummary:
    """What a run of :func:`run_batch_file` did.

    Attributes:
        total: Requests in the input (non-blank lines, bad ones included).
        succeeded: Requests answered successfully in this run.
        failed: Requests that failed in this run, bad input lines reported now included.
        skipped_already_done: Requests already in the output from an earlier run.
        remaining: Requests with no line in the output yet (after an interrupt).
        input_errors: Bad input lines (reported in the output, now or earlier).
        output: Where the results went (a path, or ``"<stdout>"``/a stream's name).
        interrupted: Whether the run stopped before the end.
    """

    total: int
    succeeded: int
    failed: int
    skipped_already_done: int
    remaining: int
    input_errors: int
    output: str
    interrupted: bool = False


@attrs.define
class _Existing:
    """What an earlier run left in the output: ids and line numbers, never records."""

    succeeded: set[str] = attrs.field(factory=set)
    failed: set[str] = attrs.field(factory=set)
    bad_lines: set[int] = attrs.field(factory=set)


_TAIL_STEP = 1 << 16  # bytes read per step while looking back for the last newline


def _cut_torn_tail(f: IO[bytes]) -> None:
    """Truncate a file (open ``r+b``) after its last newline: a line cut by a crash
    mid-write is dropped, and its request is simply sent again."""
    size = f.seek(0, os.SEEK_END)
    position, end = size, 0
    while position > 0:
        step = min(_TAIL_STEP, position)
        position -= step
        f.seek(position)
        newline = f.read(step).rfind(b"\n")
        if newline >= 0:
            end = position + newline + 1
            break
    if end != size:
        f.truncate(end)


def _read_existing(path: str, retry_failed: bool) -> _Existing:
    """Cut a torn last line, then read what is answered, one line at a time, keeping
    only ids; with ``retry_failed``, rewrite the file without the failed records
    (streamed to a temporary file, fsynced, then ``os.replace``: atomic)."""
    existing = _Existing()
    try:
        f = open(path, "r+b")
    except FileNotFoundError:
        return existing
    with f:
        _cut_torn_tail(f)
        f.seek(0)
        for raw in f:
            record = classify_record(raw)
            if record is None:
                continue  # not ours to judge; it stays
            if record.bad_line is not None:
                existing.bad_lines.add(record.bad_line)
            elif record.custom_id is not None:
                if record.ok:
                    existing.succeeded.add(record.custom_id)
                else:
                    existing.failed.add(record.custom_id)
        if retry_failed and existing.failed:
            f.seek(0)
            _rewrite_without(path, f, existing.failed)
            existing.failed = set()
    return existing


def _rewrite_without(path: str, source: IO[bytes], failed: set[str]) -> None:
    """Replace ``path`` by a copy of ``source`` without the failed records of ``failed``."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, temp = tempfile.mkstemp(prefix=".trioclient-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as copy:
            for raw in source:
                record = classify_record(raw)
                if record is not None and not record.ok and record.custom_id in failed:
                    continue
                copy.write(raw)
            copy.flush()
            os.fsync(copy.fileno())
        os.replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise


def lock_path(output: str) -> str:
    """The lock file beside ``output`` that a running run holds."""
    return output + ".lock"


def lock_output(output: str) -> int:
    """Take the output's lock (non-blocking ``flock``) or raise :class:`BatchFileError`.

    The kernel drops an flock with the process that held it, so a run killed by
    ``kill -9`` leaves no stale lock behind; the lock file itself stays (removing it
    would race with a run opening it) and holds the pid of the last run, for the message.
    """
    path = lock_path(output)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    if sys.platform == "win32":  # pragma: no cover - no flock there; runs are not locked
        return fd
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        os.close(fd)
        who = f" (pid {holder})" if holder.isdigit() else ""
        raise BatchFileError(
            f"another run is writing to {output}{who}: it holds {path}. Two runs on one "
            "output would send requests twice; wait for it to end (or stop it), then run "
            "again to resume"
        ) from None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


class _Sink:
    """Where records go: one ``os.write`` per line to an ``O_APPEND`` file, or a stream."""

    def __init__(
        self,
        name: str,
        fd: int | None = None,
        stream: IO[Any] | None = None,
        lock_fd: int | None = None,
    ) -> None:
        self.name = name
        self._fd = fd
        self._lock_fd = lock_fd
        self._stream = stream
        self._text = stream is not None and isinstance(stream, io.TextIOBase)

    def write_lines(self, lines: list[tuple[bytes, bool]], written: list[bool]) -> None:
        """Write each line whole, in order, appending its ``ok`` flag to ``written``
        once it is out (blocking: the :class:`_Writer` runs this in a worker thread)."""
        for data, ok in lines:
            self._write(data)
            written.append(ok)

    def _write(self, data: bytes) -> None:
        try:
            if self._fd is not None:
                written = os.write(self._fd, data)
                while written < len(data):  # a short write: finish the line
                    written += os.write(self._fd, data[written:])
            else:
                assert self._stream is not None
                self._stream.write(data.decode() if self._text else data)
                self._stream.flush()
        except OSError as exc:
            raise BatchFileError(
                f"cannot write results to {self.name}: {exc.strerror or exc}; the run "
                "stopped, and every line written before this one is intact"
            ) from exc

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.fsync(fd)
            except OSError:
                pass
            os.close(fd)
        if self._lock_fd is not None:
            lock_fd, self._lock_fd = self._lock_fd, None
            os.close(lock_fd)  # releases the flock


_QUEUE = 64  # finished results waiting for the writer at most
_DRAIN_TIMEOUT = 5.0  # seconds a cancelled or interrupted run gives the writer to catch up


class _Writer:
    """Writes result lines off the trio thread, in the order they come, a batch of
    queued lines per worker-thread call.

    A slow reader (standard output piped into a program that stalls, a slow disk)
    blocks a worker thread, never the trio loop: requests in flight run to their ends
    and their deadlines do not fire because of it. When the queue is full, :meth:`put`
    waits, and the batch engine's window stops admitting requests: backpressure, not
    memory. Each line is still written whole, at once (an ``os.write``, or a write and a
    flush), so a line written is a line kept if the process dies.

    :meth:`serve` runs in a shielded scope: cancelling the run does not drop results
    already answered. :meth:`finish` closes the queue and waits for it to be written,
    at most :data:`_DRAIN_TIMEOUT` when the run is being cancelled (a line already
    handed to the thread is always finished).
    """

    def __init__(self, sink: _Sink, on_written: Callable[[bool], None]) -> None:
        self._sink = sink
        self._on_written = on_written
        self._send, self._receive = trio.open_memory_channel[tuple[bytes, bool]](_QUEUE)
        self._scope = trio.CancelScope(shield=True)
        self._done = trio.Event()
        self.producer = trio.CancelScope()  # cancelled when a write fails
        self.failed: BatchFileError | None = None

    async def put(self, data: bytes, ok: bool) -> None:
        """Queue one line (waits while the queue is full)."""
        try:
            await self._send.send((data, ok))
        except trio.BrokenResourceError:
            assert self.failed is not None  # the writer only stops early on a failure
            raise self.failed  # noqa: B904 - its own __cause__ (the OSError) says why

    async def serve(self) -> None:
        try:
            with self._scope:
                async with self._receive:
                    async for first in self._receive:
                        batch = [first]
                        while len(batch) < _QUEUE:
                            try:
                                batch.append(self._receive.receive_nowait())
                            except (trio.WouldBlock, trio.EndOfChannel):
                                break
                        written: list[bool] = []
                        try:
                            await trio.to_thread.run_sync(self._sink.write_lines, batch, written)
                        except BatchFileError as exc:
                            self.failed = exc
                            self.producer.cancel()
                            return
                        finally:
                            for ok in written:
                                self._on_written(ok)
        finally:
            self._done.set()

    async def finish(self, *, hurry: bool) -> None:
        self._send.close()
        if hurry:
            self._scope.deadline = trio.current_time() + _DRAIN_TIMEOUT
        with trio.CancelScope(shield=True):
            await self._done.wait()


class BatchFileRunner:
    """One run over a batch file; :func:`run_batch_file` is the short form.

    Keep the runner to read :meth:`summary` after an interrupt::

        runner = BatchFileRunner(client, "in.jsonl", "out.jsonl")
        try:
            summary = await runner.run()
        except KeyboardInterrupt:
            print(f"stopped; {runner.summary().remaining} remain: run again to resume")

    Args: as :func:`run_batch_file`.
    """

    def __init__(
        self,
        client: Client,
        input: InputArg,
        output: InputArg,
        *,
        model: str | None = None,
        max_concurrent: int | None = None,
        rpm: float | None = None,
        tpm: float | None = None,
        timeout: Timeout | float | None = None,
        retry: RetryPolicy | None = None,
        retry_failed: bool = False,
        on_progress: Callable[[BatchProgress], object] | None = None,
        shard: tuple[int, int] | None = None,
    ) -> None:
        self._shard = None if shard is None else Shard(*shard)
        if model is not None and (not isinstance(model, str) or not model):
            raise ValueError(f"model must be a non-empty string, got {model!r}")
        self._client = client
        self._input = input
        self._output = output
        self._model = model
        self._options: dict[str, Any] = {
            "max_concurrent": max_concurrent,
            "rpm": rpm,
            "tpm": tpm,
            "timeout": timeout,
            "retry": retry,
        }
        self._retry_failed = retry_failed
        self._on_progress = on_progress
        self._total = 0
        self._skipped = 0
        self._succeeded = 0
        self._failed = 0
        self._input_errors = 0
        self._output_name = _name_of(output)
        self._finished = False

    def summary(self) -> BatchFileSummary:
        """The tally so far (complete once :meth:`run` returned)."""
        written = self._skipped + self._succeeded + self._failed
        return BatchFileSummary(
            total=self._total,
            succeeded=self._succeeded,
            failed=self._failed,
            skipped_already_done=self._skipped,
            remaining=max(0, self._total - written),
            input_errors=self._input_errors,
            output=self._output_name,
            interrupted=not self._finished,
        )

    async def run(self) -> BatchFileSummary:
        """Run the file to its end (or to the first write error / interrupt).

        Raises:
            BatchFileError: duplicate custom_ids (nothing sent), unreadable input, plain
                text without ``model``, or an output write that failed.
        """
        source, owned = await self._open_input()
        try:
            return await self._run(source)
        except KeyboardInterrupt as exc:
            summary = self.summary()
            exc.add_note(
                f"batch file interrupted: {summary.remaining} of {summary.total} requests "
                f"remain; every finished result is in {summary.output}; run the same "
                "command again to resume"
            )
            raise
        finally:
            if owned:
                source.close()

    async def _open_input(self) -> tuple[IO[Any], bool]:
        spec = self._input
        if isinstance(spec, str | os.PathLike) and os.fspath(spec) != "-":
            path = os.fspath(spec)
            try:
                return await trio.to_thread.run_sync(open, path, "rb"), True
            except OSError as exc:
                raise BatchFileError(f"cannot read input {path!r}: {exc.strerror or exc}") from exc
        stream: IO[Any] = sys.stdin.buffer if isinstance(spec, str | os.PathLike) else spec
        if _seekable(stream):
            return stream, False
        # Standard input cannot be read twice: spool it (to disk past 16 MiB).
        spool: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=16 << 20)

        def copy() -> None:
            while block := stream.read(BLOCK):
                spool.write(block if isinstance(block, bytes) else block.encode())
            spool.seek(0)

        await trio.to_thread.run_sync(copy)
        return spool, True

    async def _run(self, source: IO[Any]) -> BatchFileSummary:
        start = source.tell()
        found = await trio.to_thread.run_sync(scan, source, None)
        # Pass two skips every bad line, this shard's or not.
        bad_lines = {bad.line for bad in found.bad}
        if self._shard is not None:
            found = take_shard(found, self._shard)
        if found.duplicates:
            shown = "; ".join(
                f"{cid!r} on lines {', '.join(map(str, lines))}"
                for cid, lines in list(found.duplicates.items())[:10]
            )
            more = len(found.duplicates) - 10
            raise BatchFileError(
                f"duplicate custom_id values in {_name_of(self._input)}: {shown}"
                + (f" (and {more} more)" if more > 0 else "")
                + "; nothing was sent: each custom_id must be unique"
            )
        if found.plain and self._model is None:
            raise BatchFileError(
                f"{_name_of(self._input)} is plain text (one prompt a line): pass model=... "
                "(--model) to say which model answers it"
            )
        self._total = found.total
        self._input_errors = len(found.bad)
        sink, existing = await self._open_output()
        try:
            done = existing.succeeded | existing.failed
            self._skipped = sum(1 for cid in found.ids if cid in done)
            to_report: list[BadLine] = []
            for bad in found.bad:
                if bad.custom_id in done:
                    continue  # counted above
                if bad.line in existing.bad_lines:
                    self._skipped += 1
                    continue
                to_report.append(bad)
            await trio.to_thread.run_sync(source.seek, start)
            requests = self._requests(source, found.plain, bad_lines, done)
            await self._consume(to_report, requests, sink)
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(sink.close)
        self._finished = True
        return self.summary()

    async def _open_output(self) -> tuple[_Sink, _Existing]:
        spec = self._output
        if isinstance(spec, str | os.PathLike) and os.fspath(spec) != "-":
            path = os.fspath(spec)
            if _is_pipe_or_device(path):
                # A named pipe, /dev/stdout, a terminal: written like a stream. There is
                # nothing to resume from (reading it back would block) and no file to lock.
                try:
                    fd = await trio.to_thread.run_sync(
                        os.open, path, os.O_WRONLY | os.O_APPEND, abandon_on_cancel=True
                    )
                except OSError as exc:
                    raise BatchFileError(
                        f"cannot open output {path!r}: {exc.strerror or exc}"
                    ) from exc
                return _Sink(path, fd=fd), _Existing()
            try:
                lock_fd = lock_output(path)
            except OSError as exc:
                raise BatchFileError(
                    f"cannot lock output {path!r} ({lock_path(path)}): {exc.strerror}"
                ) from exc
            try:
                existing = await trio.to_thread.run_sync(_read_existing, path, self._retry_failed)
                fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            except BaseException as exc:
                os.close(lock_fd)
                if isinstance(exc, OSError):
                    raise BatchFileError(
                        f"cannot open output {path!r}: {exc.strerror or exc}"
                    ) from exc
                raise
            return _Sink(path, fd=fd, lock_fd=lock_fd), existing
        stream: IO[Any] = sys.stdout if isinstance(spec, str | os.PathLike) else spec
        return _Sink(_name_of(spec), stream=stream), _Existing()

    async def _requests(
        self, source: IO[Any], plain: bool, bad_lines: set[int], done: set[str]
    ) -> AsyncIterator[tuple[str, dict[str, Any], str]]:
        """Pass two: the requests still to send, read a block at a time."""
        model, shard = self._model, self._shard
        number = 0
        while True:
            block = await trio.to_thread.run_sync(source.readlines, BLOCK)
            if not block:
                return
            for raw in block:
                number += 1
                text = decode(raw).rstrip("\r\n")
                if not text.strip() or number in bad_lines:
                    continue
                if plain:
                    custom_id = plain_id(number)
                    if custom_id in done or (shard is not None and not shard.owns(custom_id)):
                        continue
                    assert model is not None
                    yield (
                        custom_id,
                        {"model": model, "messages": [{"role": "user", "content": text}]},
                        _endpoints.DEFAULT_URL,
                    )
                    continue
                parsed = parse_line(text, number)
                assert not isinstance(parsed, BadLine)  # the scan saw this line
                custom_id, body, url = parsed
                if custom_id in done or (shard is not None and not shard.owns(custom_id)):
                    continue
                if model is not None and "model" not in body:
                    body["model"] = model
                yield custom_id, body, url

    async def _consume(
        self,
        bad_lines: list[BadLine],
        requests: AsyncIterator[tuple[str, dict[str, Any], str]],
        sink: _Sink,
    ) -> None:
        writer = _Writer(sink, self._count_written)
        async with open_background() as background:
            background.start_soon(writer.serve)
            hurry = True
            try:
                with writer.producer:
                    for bad in bad_lines:
                        await writer.put(encode_record(bad_line_record(bad)), False)
                    async with self._client.batch(requests, **self._options) as results:
                        if self._on_progress is not None:
                            background.start_soon(self._report, results.progress.eventual_values)
                        async for result in results:
                            await writer.put(encode_record(result_record(result)), result.ok)
                hurry = False
            finally:
                await writer.finish(hurry=hurry)
            if writer.failed is not None:
                raise writer.failed
            if self._on_progress is not None:
                self._on_progress(results.snapshot())

    def _count_written(self, ok: bool) -> None:
        if ok:
            self._succeeded += 1
        else:
            self._failed += 1

    async def _report(self, values: Callable[[], AsyncIterator[BatchProgress]]) -> None:
        assert self._on_progress is not None
        # aclosing: an exception from the callback must not leave the generator to the
        # garbage collector.
        async with contextlib.aclosing(values()) as updates:  # type: ignore[type-var]
            async for progress in updates:
                self._on_progress(progress)


def _is_pipe_or_device(path: str) -> bool:
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISSOCK(mode)


def _seekable(stream: IO[Any]) -> bool:
    try:
        return bool(stream.seekable())
    except (AttributeError, ValueError, OSError):
        return False


def _name_of(spec: object) -> str:
    if isinstance(spec, str | os.PathLike):
        path = os.fspath(spec)
        return "<stdin/stdout>" if path == "-" else str(path)
    name = getattr(spec, "name", None)
    return str(name) if isinstance(name, str) else repr(spec)


async def run_batch_file(
    client: Client,
    input: InputArg,
    output: InputArg,
    *,
    model: str | None = None,
    max_concurrent: int | None = None,
    rpm: float | None = None,
    tpm: float | None = None,
    timeout: Timeout | float | None = None,
    retry: RetryPolicy | None = None,
    retry_failed: bool = False,
    on_progress: Callable[[BatchProgress], object] | None = None,
    shard: tuple[int, int] | None = None,
) -> BatchFileSummary:
    """Run a Batch API JSONL file (or a file of prompts) through ``client``, durably.

    See the module documentation for the formats, resuming and stopping.

    Args:
        client: An open :class:`~trioclient.Client`.
        input: A path, ``"-"`` for standard input, or a readable file object (text or
            binary).
        output: A path (appended to, and resumed from), ``"-"`` for standard output,
            or a writable file object (text or binary; no resuming).
        model: The model for plain-text input, and for JSONL bodies without one.
        max_concurrent, rpm, tpm, timeout, retry: As for ``client.batch``.
        retry_failed: Send again the requests whose earlier result was a failure.
        shard: ``(I, N)``: run only shard I of N (1-based) of the input, the requests
            whose ``custom_id`` hashes there (blake2b, mod N), so N workers given the
            same input and each its own ``output`` split it without overlap. The
            command line's ``--shard I/N`` and ``--merge`` add part names and merging.
        on_progress: Called with each new :class:`~trioclient.BatchProgress` snapshot.

    Raises:
        BatchFileError: duplicate custom_ids (nothing sent), unreadable input, plain
            text without ``model``, or an output write that failed.
    """
    runner = BatchFileRunner(
        client,
        input,
        output,
        model=model,
        max_concurrent=max_concurrent,
        rpm=rpm,
        tpm=tpm,
        timeout=timeout,
        retry=retry,
        retry_failed=retry_failed,
        on_progress=on_progress,
        shard=shard,
    )
    return await runner.run()
