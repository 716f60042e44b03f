"""The durable JSONL runner: a Batch API file in, a Batch API results file out, resumable.

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
is another matter: the file is fsynced at the end of a run, not per line.)

**Resuming** is running the same command again. The runner reads the output first:
it cuts a torn last line back to the last newline, skips every ``custom_id`` already
answered, and sends only the rest, so each ``custom_id`` appears exactly once. Failed
ones are skipped too, unless ``retry_failed=True``: then the output is first rewritten
without their lines (a temporary file, fsynced, then ``os.replace``: atomic, so a crash
leaves either the old file or the new one), and they are sent again.

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
import json
import os
import secrets
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from typing import IO, TYPE_CHECKING, Any

import attrs
import trio

from . import _endpoints
from ._batch import BatchProgress, BatchResult
from ._config import Timeout
from ._exceptions import (
    APIConnectionError,
    APIResponseValidationError,
    APIStatusError,
    APIStreamError,
    APITimeoutError,
    ResponseTooLargeError,
)
from ._retry import RetryPolicy

if TYPE_CHECKING:
    from ._client import Client

__all__ = ["BatchFileError", "BatchFileRunner", "BatchFileSummary", "run_batch_file"]

SUPPORTED_URLS = _endpoints.SUPPORTED_URLS
_BLOCK = 1 << 20  # bytes of input read per worker-thread call

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


@attrs.frozen
class _BadLine:
    line: int
    custom_id: str | None
    code: str
    message: str


@attrs.define
class _Scan:
    """What the first pass over the input learned (ids and bad lines, not bodies)."""

    plain: bool = False
    total: int = 0
    ids: dict[str, int] = attrs.field(factory=dict)  # custom_id -> line number
    bad: list[_BadLine] = attrs.field(factory=list)
    duplicates: dict[str, list[int]] = attrs.field(factory=dict)


def _decode(raw: bytes | str) -> str:
    if isinstance(raw, bytes):
        return raw.decode("utf-8", "replace")
    return raw


def _parse_line(text: str, number: int) -> tuple[str, dict[str, Any], str] | _BadLine:
    """One JSONL request line -> ``(custom_id, body, url)``, or why it cannot be sent."""
    try:
        obj = json.loads(text)
    except ValueError as exc:
        return _BadLine(number, None, "invalid_json", f"line {number}: not valid JSON ({exc})")
    if not isinstance(obj, dict):
        return _BadLine(number, None, "invalid_request", f"line {number}: expected a JSON object")
    custom_id = obj.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        return _BadLine(
            number,
            None,
            "missing_custom_id",
            f"line {number}: no custom_id (every request needs a unique string custom_id)",
        )
    method = obj.get("method", "POST")
    if not isinstance(method, str) or method.upper() != "POST":
        return _BadLine(
            number,
            custom_id,
            "unsupported_method",
            f"line {number}: method {method!r} is not supported: only POST",
        )
    url = obj.get("url", "/v1/chat/completions")
    if url not in SUPPORTED_URLS:
        return _BadLine(
            number,
            custom_id,
            "unsupported_url",
            f"line {number}: url {url!r} is not supported: only /v1/chat/completions, "
            "/v1/embeddings or /v1/responses (the /v1 prefix may be left out)",
        )
    body = obj.get("body")
    if not isinstance(body, dict):
        return _BadLine(
            number, custom_id, "invalid_body", f"line {number}: 'body' must be a JSON object"
        )
    return custom_id, body, url


def _lines(stream: IO[Any]) -> Iterator[tuple[int, str]]:
    number = 0
    while True:
        block = stream.readlines(_BLOCK)
        if not block:
            return
        for raw in block:
            number += 1
            yield number, _decode(raw).rstrip("\r\n")


def _scan(stream: IO[Any], plain: bool | None) -> _Scan:
    """Pass one (in a worker thread): ids, duplicates and bad lines."""
    scan = _Scan()
    for number, text in _lines(stream):
        if not text.strip():
            continue
        if plain is None:
            plain = not text.lstrip().startswith("{")
        scan.total += 1
        if plain:
            scan.ids[f"line-{number}"] = number
            continue
        parsed = _parse_line(text, number)
        if isinstance(parsed, _BadLine):
            scan.bad.append(parsed)
            if parsed.custom_id is None:
                continue
            custom_id = parsed.custom_id
        else:
            custom_id = parsed[0]
        first = scan.ids.setdefault(custom_id, number)
        if first != number:
            scan.duplicates.setdefault(custom_id, [first]).append(number)
    scan.plain = bool(plain)
    return scan


@attrs.define
class _Existing:
    """What an earlier run left in the output."""

    succeeded: set[str] = attrs.field(factory=set)
    failed: set[str] = attrs.field(factory=set)
    bad_lines: set[int] = attrs.field(factory=set)


def _repair_and_read(path: str, retry_failed: bool) -> _Existing:
    """Cut a torn last line, read what is answered, and (``retry_failed``) rewrite the
    file without the failed records, atomically."""
    existing = _Existing()
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return existing
    end = data.rfind(b"\n") + 1
    if end != len(data):
        # A line cut by a crash mid-write: its request is simply sent again.
        with open(path, "r+b") as f:
            f.truncate(end)
        data = data[:end]
    kept: list[bytes] = []
    dropped = False
    for raw in data.splitlines(keepends=True):
        try:
            record = json.loads(raw)
        except ValueError:
            kept.append(raw)  # not ours to judge; leave it
            continue
        if not isinstance(record, dict):
            kept.append(raw)
            continue
        custom_id = record.get("custom_id")
        error = record.get("error")
        if isinstance(error, dict) and isinstance(error.get("line"), int) and custom_id is None:
            existing.bad_lines.add(error["line"])
        elif isinstance(custom_id, str):
            if error is None:
                existing.succeeded.add(custom_id)
            elif retry_failed:
                dropped = True
                continue
            else:
                existing.failed.add(custom_id)
        kept.append(raw)
    if dropped:
        directory = os.path.dirname(os.path.abspath(path))
        fd, temp = tempfile.mkstemp(prefix=".trioclient-", dir=directory)
        try:
            with os.fdopen(fd, "wb") as f:
                f.writelines(kept)
                f.flush()
                os.fsync(f.fileno())
            os.replace(temp, path)
        except BaseException:
            try:
                os.unlink(temp)
            except OSError:
                pass
            raise
    return existing


def _error_code(error: Exception) -> str:
    if isinstance(error, APIStatusError):
        return error.code or f"http_{error.status_code}"
    if isinstance(error, APITimeoutError):
        return "timeout"
    if isinstance(error, APIConnectionError):
        return "connection_error"
    if isinstance(error, APIStreamError):
        return "stream_error"
    if isinstance(error, APIResponseValidationError):
        return "invalid_response"
    if isinstance(error, ResponseTooLargeError):
        return "response_too_large"
    if isinstance(error, TypeError | ValueError):
        return "invalid_request"
    return "error"


def _record_id() -> str:
    return "batch_req_" + secrets.token_hex(12)


def result_record(result: BatchResult) -> dict[str, Any]:
    """A batch result in the Batch API's output format."""
    if result.response is not None and result.error is None:
        return {
            "id": _record_id(),
            "custom_id": result.custom_id,
            "response": {
                "status_code": result.status_code or 200,
                "request_id": result.request_id,
                "body": result.response.to_dict(),
            },
            "error": None,
        }
    error = result.error
    response = None
    if isinstance(error, APIStatusError):
        response = {
            "status_code": error.status_code,
            "request_id": error.request_id,
            "body": error.body,
        }
    return {
        "id": _record_id(),
        "custom_id": result.custom_id,
        "response": response,
        "error": {
            "code": "error" if error is None else _error_code(error),
            "message": str(error),
        },
    }


def _bad_line_record(bad: _BadLine) -> dict[str, Any]:
    return {
        "id": _record_id(),
        "custom_id": bad.custom_id,
        "response": None,
        "error": {"code": bad.code, "message": bad.message, "line": bad.line},
    }


class _Sink:
    """Where records go: one ``os.write`` per line to an ``O_APPEND`` file, or a stream."""

    def __init__(self, name: str, fd: int | None = None, stream: IO[Any] | None = None) -> None:
        self.name = name
        self._fd = fd
        self._stream = stream
        self._text = stream is not None and isinstance(stream, io.TextIOBase)

    def write(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"
        try:
            if self._fd is not None:
                data = line.encode()
                written = os.write(self._fd, data)
                while written < len(data):  # a short write: finish the line
                    written += os.write(self._fd, data[written:])
            else:
                assert self._stream is not None
                self._stream.write(line if self._text else line.encode())
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
    ) -> None:
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
                raise BatchFileError(f"cannot read input {path!r}: {exc.strerror}") from exc
        stream: IO[Any] = sys.stdin.buffer if isinstance(spec, str | os.PathLike) else spec
        if _seekable(stream):
            return stream, False
        # Standard input cannot be read twice: spool it (to disk past 16 MiB).
        spool: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=16 << 20)

        def copy() -> None:
            while block := stream.read(_BLOCK):
                spool.write(block if isinstance(block, bytes) else block.encode())
            spool.seek(0)

        await trio.to_thread.run_sync(copy)
        return spool, True

    async def _run(self, source: IO[Any]) -> BatchFileSummary:
        start = source.tell()
        scan = await trio.to_thread.run_sync(_scan, source, None)
        if scan.duplicates:
            shown = "; ".join(
                f"{cid!r} on lines {', '.join(map(str, lines))}"
                for cid, lines in list(scan.duplicates.items())[:10]
            )
            more = len(scan.duplicates) - 10
            raise BatchFileError(
                f"duplicate custom_id values in {_name_of(self._input)}: {shown}"
                + (f" (and {more} more)" if more > 0 else "")
                + "; nothing was sent: each custom_id must be unique"
            )
        if scan.plain and self._model is None:
            raise BatchFileError(
                f"{_name_of(self._input)} is plain text (one prompt a line): pass model=... "
                "(--model) to say which model answers it"
            )
        self._total = scan.total
        self._input_errors = len(scan.bad)
        sink, existing = await self._open_output()
        try:
            done = existing.succeeded | existing.failed
            self._skipped = sum(1 for cid in scan.ids if cid in done)
            for bad in scan.bad:
                if bad.custom_id in done:
                    continue  # counted above
                if bad.line in existing.bad_lines:
                    self._skipped += 1
                    continue
                sink.write(_bad_line_record(bad))
                self._failed += 1
            bad_lines = {bad.line for bad in scan.bad}
            await trio.to_thread.run_sync(source.seek, start)
            requests = self._requests(source, scan.plain, bad_lines, done)
            await self._consume(requests, sink)
        finally:
            sink.close()
        self._finished = True
        return self.summary()

    async def _open_output(self) -> tuple[_Sink, _Existing]:
        spec = self._output
        if isinstance(spec, str | os.PathLike) and os.fspath(spec) != "-":
            path = os.fspath(spec)
            try:
                existing = await trio.to_thread.run_sync(_repair_and_read, path, self._retry_failed)
                fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            except OSError as exc:
                raise BatchFileError(f"cannot open output {path!r}: {exc.strerror}") from exc
            return _Sink(path, fd=fd), existing
        stream: IO[Any] = sys.stdout if isinstance(spec, str | os.PathLike) else spec
        return _Sink(_name_of(spec), stream=stream), _Existing()

    async def _requests(
        self, source: IO[Any], plain: bool, bad_lines: set[int], done: set[str]
    ) -> AsyncIterator[tuple[str, dict[str, Any], str]]:
        """Pass two: the requests still to send, read a block at a time."""
        model = self._model
        number = 0
        while True:
            block = await trio.to_thread.run_sync(source.readlines, _BLOCK)
            if not block:
                return
            for raw in block:
                number += 1
                text = _decode(raw).rstrip("\r\n")
                if not text.strip() or number in bad_lines:
                    continue
                if plain:
                    custom_id = f"line-{number}"
                    if custom_id in done:
                        continue
                    assert model is not None
                    yield (
                        custom_id,
                        {"model": model, "messages": [{"role": "user", "content": text}]},
                        _endpoints.DEFAULT_URL,
                    )
                    continue
                parsed = _parse_line(text, number)
                assert not isinstance(parsed, _BadLine)  # the scan saw this line
                custom_id, body, url = parsed
                if custom_id in done:
                    continue
                if model is not None and "model" not in body:
                    body["model"] = model
                yield custom_id, body, url

    async def _consume(
        self, requests: AsyncIterator[tuple[str, dict[str, Any], str]], sink: _Sink
    ) -> None:
        stashed: BaseException | None = None
        async with self._client.batch(requests, **self._options) as results:
            try:
                async with trio.open_nursery() as nursery:
                    if self._on_progress is not None:
                        nursery.start_soon(self._report, results.progress.eventual_values)
                    try:
                        async for result in results:
                            sink.write(result_record(result))
                            if result.ok:
                                self._succeeded += 1
                            else:
                                self._failed += 1
                        if self._on_progress is not None:
                            self._on_progress(results.snapshot())
                    except trio.Cancelled:
                        raise
                    except BaseException as exc:
                        # Kept out of this nursery (Ctrl-C above all) so it comes out as
                        # itself, not wrapped in a group.
                        stashed = exc
                    finally:
                        nursery.cancel_scope.cancel()
            except BaseExceptionGroup as group:
                # Ctrl-C that reached the progress task instead: one plain interrupt.
                if group.subgroup(KeyboardInterrupt) is not None:
                    raise KeyboardInterrupt from group
                raise
        if stashed is not None:
            raise stashed

    async def _report(self, values: Callable[[], AsyncIterator[BatchProgress]]) -> None:
        assert self._on_progress is not None
        # aclosing: an exception from the callback must not leave the generator to the
        # garbage collector.
        async with contextlib.aclosing(values()) as updates:  # type: ignore[type-var]
            async for progress in updates:
                self._on_progress(progress)


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
    )
    return await runner.run()
