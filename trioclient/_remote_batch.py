"""Remote batches: the same JSONL file, run by the provider's Batch API instead of live.

::

    summary = await run_remote_batch_file(client, "requests.jsonl", "results.jsonl")

The input, the output and the resume rules are the live runner's
(:mod:`trioclient._batch_file`): the same duplicate-id refusal, the same bad-line
records, the same output records, and every ``custom_id`` already in the output is
skipped, so ``--remote`` after a partly finished live run sends only what is left.
What differs is who runs the requests:

1. the requests still to send are grouped by ``url`` (OpenAI's batches take one
   endpoint each) and each group is uploaded as a JSONL file (``POST /files``, with
   ``purpose=batch`` for OpenAI; xAI's upload takes none);
2. a batch is created on each (``POST /batches`` with ``input_file_id``,
   ``endpoint``, ``completion_window``) and its id is written to a **state file**
   beside the output (``OUTPUT.remote.json``) before anything else happens;
3. each batch is polled (``GET /batches/{id}``) every ``poll_interval`` seconds until
   it is done: OpenAI's ``status`` (``completed``, ``failed``, ``expired``,
   ``cancelled``), or xAI's ``state.num_pending`` reaching 0;
4. the results are read, OpenAI's way (the ``output_file_id`` and ``error_file_id``
   files) or xAI's (``GET /batches/{id}/results``, page by page with
   ``pagination_token``, the answer under ``batch_result.response``), and each is
   written as the live runner's record: ``response`` with ``status_code``,
   ``request_id`` and ``body``; a non-2xx answer or an error gets ``error`` with a
   ``code`` and a ``message``;
5. the state file is removed once every batch's results are written.

**Resuming.** A rerun after Ctrl-C, a crash or a closed laptop finds the state file
and picks up the same batches, polling and downloading instead of uploading and
paying again. A request the batch did not answer (it expired, was cancelled) gets no
record, so the next run, live or remote, sends it again. Ctrl-C does **not** cancel a
remote batch (it goes on running and is collected by the next run) unless
``cancel_on_interrupt=True``. One gap remains: if the process dies between the
provider accepting ``POST /batches`` and the state file being written (a few
milliseconds), the next run cannot know that batch and creates another.

**Providers.** ``provider="auto"`` picks xAI's shape for an ``x.ai`` base URL and
OpenAI's otherwise; ``"openai"`` or ``"xai"`` forces one. Every call goes through the
client's request path (retries, deadlines, the 429 gate, key redaction).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
import tempfile
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, Literal

import attrs
import httpx
import trio

from ._attempt import Sender, raise_for_status, read_body, send, timeout_error
from ._background import open_background
from ._batch_file import BatchFileRunner, BatchFileSummary, InputArg, _Sink, _Writer
from ._batch_format import BadLine, bad_line_record, encode_record
from ._client import request_path
from ._config import Timeout
from ._endpoints import endpoint_for
from ._exceptions import APIResponseValidationError

if TYPE_CHECKING:
    from ._client import Client

__all__ = ["RemoteBatchProgress", "RemoteBatchRunner", "run_remote_batch_file"]

Provider = Literal["auto", "openai", "xai"]
_DONE_STATUSES = frozenset({"completed", "failed", "expired", "cancelled"})
#: The largest results file read (output files hold every answer of a batch).
_MAX_DOWNLOAD = 4 << 30


@attrs.frozen
class RemoteBatchProgress:
    """A snapshot of the remote batches of a run (``on_progress`` gets one per poll).

    Attributes:
        batch_ids: The provider's ids of the batches.
        total: Requests sent to them.
        done: Requests the provider has finished (succeeded or failed).
        failed: Of those, how many failed.
        statuses: Each batch's status (OpenAI's ``status``, or ``"in_progress"`` /
            ``"completed"`` derived from xAI's counts).
    """

    batch_ids: tuple[str, ...]
    total: int
    done: int
    failed: int
    statuses: tuple[str, ...]


def _state_path(output: str) -> str:
    return output + ".remote.json"


def _write_state(path: str, state: dict[str, Any]) -> None:
    """Atomically (temp file, fsync, rename): a crash leaves the old state or the new."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, temp = tempfile.mkstemp(prefix=".trioclient-", dir=directory)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise


def _error_record(custom_id: str, code: str, message: str, response: Any = None) -> dict[str, Any]:
    return {
        "id": "batch_req_" + secrets.token_hex(12),
        "custom_id": custom_id,
        "response": response,
        "error": {"code": code, "message": message},
    }


def record_from_result(
    custom_id: str,
    status_code: int | None,
    body: Any,
    request_id: str | None = None,
    error: Any = None,
    record_id: str | None = None,
) -> dict[str, Any]:
    """A provider's result as the live runner's output record (see ``result_record``)."""
    rid = record_id or "batch_req_" + secrets.token_hex(12)
    if error is None and status_code is not None and 200 <= status_code < 300:
        return {
            "id": rid,
            "custom_id": custom_id,
            "response": {"status_code": status_code, "request_id": request_id, "body": body},
            "error": None,
        }
    response = None
    if status_code is not None:
        response = {"status_code": status_code, "request_id": request_id, "body": body}
    code: str = "error"
    message = ""
    detail = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        code = str(error.get("code") or code)
        message = str(error.get("message") or "")
    elif isinstance(detail, dict):
        code = str(detail.get("code") or f"http_{status_code}")
        message = str(detail.get("message") or "")
    elif status_code is not None:
        code = f"http_{status_code}"
    if not message:
        message = f"the batch answered {status_code}" if status_code else "the request failed"
    record = _error_record(custom_id, code, message, response)
    record["id"] = rid
    return record


class RemoteBatchRunner(BatchFileRunner):
    """One remote run over a batch file; :func:`run_remote_batch_file` is the short form.

    It is the live :class:`~trioclient.BatchFileRunner` with another engine: reading
    the input, checking ids, skipping what is answered, writing records and
    :meth:`summary` are the same.
    """

    def __init__(
        self,
        client: Client,
        input: InputArg,
        output: InputArg,
        *,
        model: str | None = None,
        provider: Provider = "auto",
        poll_interval: float = 30.0,
        completion_window: str = "24h",
        cancel_on_interrupt: bool = False,
        retry_failed: bool = False,
        on_progress: Callable[[RemoteBatchProgress], object] | None = None,
    ) -> None:
        super().__init__(client, input, output, model=model, retry_failed=retry_failed)
        if not isinstance(output, str | os.PathLike) or os.fspath(output) == "-":
            raise ValueError("a remote batch needs an output file (its state is kept beside it)")
        if provider not in ("auto", "openai", "xai"):
            raise ValueError(f"provider must be 'auto', 'openai' or 'xai', got {provider!r}")
        if not (isinstance(poll_interval, int | float) and poll_interval > 0):
            raise ValueError(
                f"poll_interval must be a positive number of seconds, got {poll_interval!r}"
            )
        if provider == "auto":
            host = client.base_url.host
            provider = "xai" if host == "x.ai" or host.endswith(".x.ai") else "openai"
        self.provider: Literal["openai", "xai"] = provider
        self._state_file = _state_path(os.fspath(output))
        self._poll_interval = float(poll_interval)
        self._window = completion_window
        self._cancel_on_interrupt = cancel_on_interrupt
        self._on_remote_progress = on_progress
        self.batch_ids: list[str] = []

    # -- the engine the live runner's _consume is replaced by --------------------------

    async def _consume(
        self,
        bad_lines: list[BadLine],
        requests: AsyncIterator[tuple[str, dict[str, Any], str]],
        sink: _Sink,
    ) -> None:
        # The live runner's writer, fed from the provider's results instead of the
        # engine's: same records, same durability, same counts.
        writer = _Writer(sink, self._count_written)
        async with open_background() as background:
            background.start_soon(writer.serve)
            hurry = True
            try:
                with writer.producer:
                    for bad in bad_lines:
                        await writer.put(encode_record(bad_line_record(bad)), False)
                    async with contextlib.aclosing(self._remote_records(requests)) as records:
                        async for record in records:
                            await writer.put(encode_record(record), record["error"] is None)
                hurry = False
            finally:
                await writer.finish(hurry=hurry)
            if writer.failed is not None:
                raise writer.failed

    async def _remote_records(
        self, requests: AsyncIterator[tuple[str, dict[str, Any], str]]
    ) -> AsyncGenerator[dict[str, Any], None]:
        """Send what is still to do as remote batches (or find the ones a previous run
        sent), wait for them, and yield their result records."""
        requester = request_path(self._client)
        pending: dict[str, tuple[dict[str, Any], str]] = {}
        async for custom_id, body, url in requests:
            pending[custom_id] = (body, url)
        state = await trio.to_thread.run_sync(self._read_state)
        if state is None:
            if not pending:
                return
            state = {"provider": self.provider, "batches": []}
            groups: dict[str, list[str]] = {}
            for custom_id, (_, url) in pending.items():
                groups.setdefault(endpoint_for(url).url, []).append(custom_id)
            for url, ids in groups.items():
                lines = b"".join(
                    json.dumps(
                        {"custom_id": cid, "method": "POST", "url": url, "body": pending[cid][0]},
                        ensure_ascii=False,
                        separators=(",", ":"),
                    ).encode()
                    + b"\n"
                    for cid in ids
                )
                file_id = await self._upload(requester, lines)
                batch = await self._call_json(
                    requester,
                    "batches",
                    "POST",
                    {"input_file_id": file_id, "endpoint": url, "completion_window": self._window},
                )
                batch_id = batch.get("id") or batch.get("batch_id")
                if not isinstance(batch_id, str):
                    raise APIResponseValidationError(
                        f"invalid response: POST /batches gave no batch id: {str(batch)[:200]}"
                    )
                state["batches"].append({"id": batch_id, "endpoint": url, "requests": len(ids)})
                # Kept before anything else, so a rerun finds this batch.
                await trio.to_thread.run_sync(_write_state, self._state_file, state)
        self.provider = state.get("provider", self.provider)
        self.batch_ids = [b["id"] for b in state["batches"]]
        try:
            objects = await self._wait(requester, state["batches"])
        except BaseException:
            if self._cancel_on_interrupt:
                with trio.CancelScope(shield=True), trio.move_on_after(10):
                    for batch_id in self.batch_ids:
                        try:
                            await self._cancel(requester, batch_id)
                        except Exception:
                            pass
            raise
        written: set[str] = set()
        for batch in objects:
            async for record in self._results(requester, batch):
                custom_id = record["custom_id"]
                if custom_id not in pending or custom_id in written:
                    continue  # not ours (an earlier run wrote it), or a repeat
                written.add(custom_id)
                yield record
        await trio.to_thread.run_sync(_remove, self._state_file)

    def _read_state(self) -> dict[str, Any] | None:
        try:
            with open(self._state_file) as f:
                state = json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise APIResponseValidationError(
                f"cannot read the remote batch state {self._state_file}: {exc}; delete it "
                "to start a new remote batch (the old one may still be running)"
            ) from exc
        if not isinstance(state, dict) or not isinstance(state.get("batches"), list):
            raise APIResponseValidationError(f"{self._state_file} is not a remote batch state file")
        return state

    async def _wait(self, requester: Any, batches: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Poll every batch until all are done; their last objects."""
        objects: dict[str, dict[str, Any]] = {}
        while True:
            for entry in batches:
                batch_id = entry["id"]
                if batch_id in objects and self._is_done(objects[batch_id]):
                    continue
                objects[batch_id] = await self._call_json(requester, f"batches/{batch_id}", "GET")
            self._report_remote(batches, objects)
            if all(self._is_done(objects[b["id"]]) for b in batches):
                return [objects[b["id"]] for b in batches]
            await trio.sleep(self._poll_interval)

    def _is_done(self, batch: dict[str, Any]) -> bool:
        status = batch.get("status")
        if isinstance(status, str) and status in _DONE_STATUSES:
            return True
        state = batch.get("state")
        if self.provider == "xai" and isinstance(state, dict):
            pending, total = state.get("num_pending"), state.get("num_requests")
            return pending == 0 and isinstance(total, int) and total > 0
        return False

    def _counts(self, batch: dict[str, Any]) -> tuple[int, int, int]:
        """(total, done, failed) from either shape."""
        state = batch.get("state")
        if isinstance(state, dict) and isinstance(state.get("num_requests"), int):
            total = state["num_requests"]
            pending = state.get("num_pending") or 0
            failed = state.get("num_error") or 0
            return total, total - pending, failed
        counts = batch.get("request_counts") or {}
        completed, failed = counts.get("completed") or 0, counts.get("failed") or 0
        return counts.get("total") or 0, completed + failed, failed

    def _report_remote(self, batches: list[dict[str, Any]], objects: dict[str, dict[str, Any]]) -> None:
        if self._on_remote_progress is None:
            return
        total = done = failed = 0
        statuses = []
        for entry in batches:
            batch = objects[entry["id"]]
            t, d, f = self._counts(batch)
            total, done, failed = total + (t or entry["requests"]), done + d, failed + f
            status = batch.get("status")
            statuses.append(
                status
                if isinstance(status, str)
                else ("completed" if self._is_done(batch) else "in_progress")
            )
        self._on_remote_progress(
            RemoteBatchProgress(tuple(self.batch_ids), total, done, failed, tuple(statuses))
        )

    async def _results(
        self, requester: Any, batch: dict[str, Any]
    ) -> AsyncIterator[dict[str, Any]]:
        """The batch's results as output records, in either provider's shape."""
        batch_id = batch.get("id") or batch.get("batch_id")
        if self.provider == "openai":
            for key in ("output_file_id", "error_file_id"):
                file_id = batch.get(key)
                if not isinstance(file_id, str) or not file_id:
                    continue
                data = await self._call_bytes(requester, f"files/{file_id}/content")
                for raw in data.splitlines():
                    if raw.strip():
                        yield _openai_record(raw)
            return
        token: str | None = None
        while True:
            query = {"pagination_token": token} if token else None
            page = await self._call_json(
                requester, f"batches/{batch_id}/results", "GET", query=query
            )
            results = page.get("results") or []
            for item in results:
                record = _xai_record(item)
                if record is not None:
                    yield record
            token = page.get("pagination_token")
            if not token or not results:
                return

    # -- calls, through the client's request path ---------------------------------------

    async def _call_json(
        self,
        requester: Any,
        path: str,
        method: str,
        body: dict[str, Any] | None = None,
        query: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        request = requester.build_request(path, body, method=method, extra_query=query)

        def parse(response: httpx.Response, data: Any) -> dict[str, Any]:
            if not isinstance(data, dict):
                raise APIResponseValidationError(
                    f"invalid response: {method} /{path} answered {type(data).__name__}, not an object"
                )
            return data

        result: dict[str, Any] = await requester.request_json(
            request, parse, requester.timeout, requester.retry
        )
        return result

    async def _upload(self, requester: Any, lines: bytes) -> str:
        boundary = secrets.token_hex(16)
        parts = []
        if self.provider == "openai":
            parts.append(
                f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'.encode()
            )
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="batch.jsonl"\r\nContent-Type: application/jsonl\r\n\r\n'.encode()
            + lines
            + f"\r\n--{boundary}--\r\n".encode()
        )
        content = b"".join(parts)
        head = requester.build_request(
            "files",
            None,
            method="POST",
            extra_headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        request = httpx.Request(
            "POST",
            head.url,
            headers=[
                *((k, v) for k, v in head.headers.raw if k.lower() != b"content-length"),
                (b"Content-Length", str(len(content)).encode()),
            ],
            content=content,
            extensions=head.extensions,
        )
        request.read()

        def parse(response: httpx.Response, data: Any) -> str:
            file_id = data.get("id") if isinstance(data, dict) else None
            if not isinstance(file_id, str):
                raise APIResponseValidationError(
                    f"invalid response: the upload gave no file id: {str(data)[:200]}"
                )
            return file_id

        file_id: str = await requester.request_json(
            request, parse, requester.timeout, requester.retry
        )
        return file_id

    async def _call_bytes(self, requester: Any, path: str) -> bytes:
        request = requester.build_request(path, None, method="GET")

        async def attempt(sender: Sender, request: httpx.Request, timeout: Timeout) -> bytes:
            first = math.inf if timeout.first_byte is None else timeout.first_byte
            with trio.move_on_after(first) as scope:
                response = await send(sender, request)
            if scope.cancelled_caught:
                raise timeout_error(request, "first_byte", timeout.first_byte)
            body = await read_body(response, timeout, _MAX_DOWNLOAD)
            raise_for_status(response, body)
            return body

        hold = requester.token_hold()
        try:
            data: bytes = await requester.call(
                request, attempt, requester.timeout, requester.retry, hold
            )
        finally:
            hold.give_back()
        requester.counters.succeed(None)
        return data

    async def _cancel(self, requester: Any, batch_id: str) -> None:
        path = (
            f"batches/{batch_id}:cancel" if self.provider == "xai" else f"batches/{batch_id}/cancel"
        )
        await self._call_json(requester, path, "POST", {})


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _openai_record(raw: bytes) -> dict[str, Any]:
    """One line of an OpenAI output or error file as the live runner's record."""
    try:
        line = json.loads(raw)
    except ValueError:
        raise APIResponseValidationError(
            f"invalid response: a batch results line is not JSON: {raw[:200]!r}"
        ) from None
    if not isinstance(line, dict) or not isinstance(line.get("custom_id"), str):
        raise APIResponseValidationError(
            f"invalid response: a batch results line has no custom_id: {raw[:200]!r}"
        )
    response = line.get("response") if isinstance(line.get("response"), dict) else None
    status = response.get("status_code") if response else None
    return record_from_result(
        line["custom_id"],
        status if isinstance(status, int) else None,
        response.get("body") if response else None,
        response.get("request_id") if response else None,
        line.get("error"),
        line.get("id") if isinstance(line.get("id"), str) else None,
    )


def _xai_record(item: Any) -> dict[str, Any] | None:
    """One xAI result (``batch_request_id``, ``batch_result.response`` or ``.error``) as
    the live runner's record."""
    if not isinstance(item, dict):
        return None
    custom_id = item.get("batch_request_id", item.get("custom_id"))
    if not isinstance(custom_id, str):
        return None
    result = item.get("batch_result") or {}
    response = result.get("response") if isinstance(result, dict) else None
    error = result.get("error") if isinstance(result, dict) else None
    if isinstance(response, dict) and len(response) == 1:
        # Some shapes wrap the answer once more, by kind ({"chat_get_completion": {...}}).
        (inner,) = response.values()
        if isinstance(inner, dict) and ("object" in inner or "id" in inner):
            response = inner
    if error is not None or response is None:
        detail = error if isinstance(error, dict) else {"message": str(error or "no result")}
        return record_from_result(
            custom_id,
            None,
            None,
            None,
            {"code": str(detail.get("code") or "error"), "message": detail.get("message") or ""},
        )
    return record_from_result(custom_id, 200, response)


async def run_remote_batch_file(
    client: Client,
    input: InputArg,
    output: str | os.PathLike[str],
    **options: Any,
) -> BatchFileSummary:
    """Run a batch file on the provider's Batch API, resumably (see the module docs).

    Args:
        client: An open client (its base URL and key name the provider).
        input: The JSONL file (or plain text with ``model=``), as for ``run_batch_file``.
        output: The results file; the state file goes beside it.
        model: The model of plain-text input and of lines without one.
        provider: ``"auto"`` (xAI for an ``x.ai`` base URL, else OpenAI), ``"openai"``
            or ``"xai"``.
        poll_interval: Seconds between polls (trio clock).
        completion_window: Sent with each batch (``"24h"``).
        cancel_on_interrupt: Cancel the remote batches on Ctrl-C or a cancel (by default
            they go on running, and the next run collects them).
        retry_failed: Send again the requests whose record is a failure.
        on_progress: Called with a :class:`RemoteBatchProgress` after every poll.

    Raises:
        BatchFileError: as ``run_batch_file`` (duplicate ids, unreadable input...).
        APIError: a call to the batch service failed (after retries).
    """
    return await RemoteBatchRunner(client, input, output, **options).run()
