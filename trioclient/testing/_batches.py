"""`/v1/files` and `/v1/batches`: the provider's batch service, in OpenAI's and xAI's shapes.

Upload a JSONL file (`POST /v1/files`, multipart, `purpose=batch` optional as with
xAI), create a batch on it (`POST /v1/batches` with `input_file_id`, `endpoint`,
`completion_window`), poll it (`GET /v1/batches/{id}`), and read the results either
OpenAI's way (`output_file_id` / `error_file_id`, then `GET /v1/files/{id}/content`) or
xAI's (`GET /v1/batches/{id}/results`, paginated with `pagination_token`, each result's
answer under `batch_result.response`). Cancel with `POST /v1/batches/{id}/cancel` or
xAI's `POST /v1/batches/{id}:cancel`. The batch object carries both shapes' fields:
`status` and `request_counts` (OpenAI), `state` with `num_requests`, `num_pending`,
`num_success`, `num_error`, `num_cancelled` (xAI).

A batch completes `ServerConfig.batch_delay` seconds (trio clock) after it was created.
Each line then gets the answer the live endpoint would give, unless the fault picker
(probabilities, the script, as for live requests) picks a fault for it: that line
fails with a 500 and the server-error body. Batches do not count against `rpm`/`tpm`,
as with the real services.
"""

from __future__ import annotations

import json
import time
from typing import Any

import attrs
import trio

from . import _answers
from ._chat import ChatEndpoint
from ._config import ServerConfig
from ._embeddings import DEFAULT_DIMENSIONS, _float32_bytes, _inputs, _key
from ._errors import SERVER_ERROR_MESSAGE, error_body
from ._http import Request, RequestIds, Wire, send_simple
from ._render import ChatResponse, json_dumps
from ._responses import _messages_from_input, _Rendered
from ._validate import BadRequest, authenticate

__all__ = ["BatchService"]

_ENDPOINTS = ("/v1/chat/completions", "/v1/embeddings", "/v1/responses")
_PAGE = 100


@attrs.define
class _File:
    id: str
    filename: str
    purpose: str
    data: bytes
    created_at: int

    def object(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.data),
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
        }


@attrs.define
class _Batch:
    id: str
    endpoint: str
    input_file_id: str
    created_at: int
    ready_at: float
    lines: list[dict[str, Any]]
    status: str = "in_progress"
    # custom_id -> (status_code, body, error) once completed
    results: list[tuple[str, int | None, Any, dict[str, Any] | None]] = attrs.field(factory=list)
    output_file_id: str | None = None
    error_file_id: str | None = None

    def object(self) -> dict[str, Any]:
        total = len(self.lines)
        failed = sum(
            1 for _, status, _, error in self.results if error is not None or status != 200
        )
        done = len(self.results)
        pending = total - done if self.status in ("in_progress", "validating") else 0
        cancelled = total - done if self.status == "cancelled" else 0
        return {
            "id": self.id,
            "batch_id": self.id,
            "object": "batch",
            "endpoint": self.endpoint,
            "input_file_id": self.input_file_id,
            "completion_window": "24h",
            "status": self.status,
            "output_file_id": self.output_file_id,
            "error_file_id": self.error_file_id,
            "created_at": self.created_at,
            "request_counts": {"total": total, "completed": done - failed, "failed": failed},
            "state": {
                "num_requests": total,
                "num_pending": pending,
                "num_success": done - failed,
                "num_error": failed,
                "num_cancelled": cancelled,
            },
        }


def _multipart(request: Request) -> dict[str, tuple[str | None, bytes]]:
    """The fields of a multipart/form-data body: name -> (filename, content)."""
    kind = request.headers.get(b"content-type", b"")
    _, _, rest = kind.partition(b"boundary=")
    boundary = rest.split(b";")[0].strip().strip(b'"')
    if not kind.startswith(b"multipart/form-data") or not boundary:
        raise BadRequest("Expected a multipart/form-data upload with a 'file' field.", "file")
    fields: dict[str, tuple[str | None, bytes]] = {}
    for part in request.body.split(b"--" + boundary):
        head, sep, content = part.partition(b"\r\n\r\n")
        if not sep:
            continue
        disposition = b""
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-disposition:"):
                disposition = line
        name = _param(disposition, b"name")
        if name is None:
            continue
        if content.endswith(b"\r\n"):
            content = content[:-2]
        fields[name] = (_param(disposition, b"filename"), content)
    return fields


def _param(header: bytes, key: bytes) -> str | None:
    for piece in header.split(b";"):
        name, sep, value = piece.strip().partition(b"=")
        if sep and name.lower() == key:
            return value.strip().strip(b'"').decode("utf-8", "replace")
    return None


@attrs.define(eq=False)
class BatchService:
    """The files and batches a server keeps (in memory, for its lifetime)."""

    chat: ChatEndpoint
    ids: RequestIds
    files: dict[str, _File] = attrs.field(factory=dict)
    batches: dict[str, _Batch] = attrs.field(factory=dict)
    _count: int = 0

    def _new_id(self, prefix: str) -> str:
        self._count += 1
        return f"{prefix}-{self.ids.prefix}{self._count:06d}"

    async def answer(self, wire: Wire, request: Request, config: ServerConfig) -> bool:
        """Route a `/v1/files...` or `/v1/batches...` request; False ends the connection."""
        request_id = self.ids.next()
        key, problem = authenticate(request, config.api_key)
        if key is None:
            assert problem is not None
            await send_simple(wire, 401, problem, request_id)
            return True
        path = request.path.decode("latin-1").removeprefix("/v1")
        method = request.method
        try:
            status, body = self._route(method, path, request, config)
        except BadRequest as bad:
            await send_simple(wire, 400, bad.body(), request_id)
            return True
        if isinstance(body, bytes):
            await send_simple(wire, status, body, request_id, content_type=b"application/jsonl")
        else:
            await send_simple(wire, status, json_dumps(body), request_id)
        return True

    def _route(
        self, method: bytes, path: str, request: Request, config: ServerConfig
    ) -> tuple[int, Any]:
        parts = path.strip("/").split("/")
        if parts == ["files"] and method == b"POST":
            return 200, self._upload(request)
        if parts[0] == "files" and len(parts) >= 2 and method == b"GET":
            file = self.files.get(parts[1])
            if file is None:
                return 404, _not_found("file", parts[1])
            if len(parts) == 3 and parts[2] == "content":
                return 200, file.data
            return 200, file.object()
        if parts == ["batches"] and method == b"POST":
            return self._create(request, config)
        if parts[0] == "batches" and len(parts) >= 2:
            batch_id, _, action = parts[1].partition(":")
            batch = self.batches.get(batch_id)
            if batch is None:
                return 404, _not_found("batch", batch_id)
            self._advance(batch, config)
            if method == b"POST" and (action == "cancel" or parts[2:] == ["cancel"]):
                if batch.status in ("in_progress", "validating"):
                    batch.status = "cancelled"
                return 200, batch.object()
            if method == b"GET" and parts[2:] == ["results"]:
                return 200, self._results_page(batch, request)
            if method == b"GET" and len(parts) == 2 and not action:
                return 200, batch.object()
        raise BadRequest(f"Invalid URL ({method.decode()} /v1{path})")

    def _upload(self, request: Request) -> dict[str, Any]:
        fields = _multipart(request)
        if "file" not in fields:
            raise BadRequest("Missing required parameter: 'file'.", "file")
        filename, data = fields["file"]
        purpose = fields.get("purpose", (None, b"batch"))[1].decode("utf-8", "replace")
        file = _File(
            self._new_id("file"), filename or "upload.jsonl", purpose, data, int(time.time())
        )
        self.files[file.id] = file
        return file.object()

    def _create(self, request: Request, config: ServerConfig) -> tuple[int, Any]:
        try:
            body = json.loads(request.body)
        except ValueError:
            raise BadRequest("We could not parse the JSON body of your request.") from None
        if not isinstance(body, dict):
            raise BadRequest("Expected a JSON object.")
        file = self.files.get(str(body.get("input_file_id")))
        if file is None:
            return 404, _not_found("file", str(body.get("input_file_id")))
        endpoint = body.get("endpoint")
        if endpoint is not None and endpoint not in _ENDPOINTS:
            raise BadRequest(f"Invalid 'endpoint': {json.dumps(endpoint)}.", "endpoint")
        lines: list[dict[str, Any]] = []
        for number, raw in enumerate(file.data.splitlines(), 1):
            if not raw.strip():
                continue
            try:
                line = json.loads(raw)
            except ValueError:
                raise BadRequest(f"Line {number} of the input file is not JSON.") from None
            if not isinstance(line, dict) or not isinstance(line.get("custom_id"), str):
                raise BadRequest(f"Line {number} of the input file has no custom_id.")
            url = line.get("url")
            if endpoint is not None and url != endpoint:
                raise BadRequest(
                    f"Line {number}: url {url!r} does not match the batch endpoint {endpoint!r}."
                )
            lines.append(line)
        batch = _Batch(
            self._new_id("batch"),
            endpoint or "mixed",
            file.id,
            int(time.time()),
            trio.current_time() + config.batch_delay,
            lines,
        )
        self.batches[batch.id] = batch
        return 200, batch.object()

    def _advance(self, batch: _Batch, config: ServerConfig) -> None:
        """Complete a batch whose time has come: every line answered (or faulted)."""
        if batch.status != "in_progress" or trio.current_time() < batch.ready_at:
            return
        for line in batch.lines:
            custom_id = line["custom_id"]
            fault = self.chat.faults.pick(config.faults)
            if fault is not None:
                self.chat.counters.faults_injected[fault] += 1
                body = json.loads(error_body(SERVER_ERROR_MESSAGE, "server_error"))
                batch.results.append((custom_id, 500, body, None))
                continue
            try:
                answer = _answer_line(line, config, self.ids.next())
            except BadRequest as bad:
                batch.results.append((custom_id, 400, json.loads(bad.body()), None))
                continue
            batch.results.append((custom_id, 200, answer, None))
        ok = [r for r in batch.results if r[1] == 200]
        failed = [r for r in batch.results if r[1] != 200]
        batch.output_file_id = self._store_results(batch, ok) if ok else None
        batch.error_file_id = self._store_results(batch, failed) if failed else None
        batch.status = "completed"

    def _store_results(self, batch: _Batch, results: list[Any]) -> str:
        lines = []
        for custom_id, status, body, _ in results:
            record = {
                "id": f"batch_req_{self.ids.next()}",
                "custom_id": custom_id,
                "response": {"status_code": status, "request_id": self.ids.next(), "body": body},
                "error": None,
            }
            lines.append(json_dumps(record) + b"\n")
        file = _File(
            self._new_id("file"),
            f"{batch.id}_output.jsonl",
            "batch_output",
            b"".join(lines),
            int(time.time()),
        )
        self.files[file.id] = file
        return file.id

    def _results_page(self, batch: _Batch, request: Request) -> dict[str, Any]:
        token = _query(request, "pagination_token")
        start = int(token) if token and token.isdigit() else 0
        page = batch.results[start : start + _PAGE]
        results = []
        for custom_id, status, body, _ in page:
            if status == 200:
                result = {"response": body}
            else:
                error = body.get("error", {}) if isinstance(body, dict) else {}
                result = {"error": {"code": status, "message": error.get("message", "")}}
            results.append({"batch_request_id": custom_id, "batch_result": result})
        more = start + _PAGE < len(batch.results)
        return {"results": results, "pagination_token": str(start + _PAGE) if more else None}


def _query(request: Request, name: str) -> str | None:
    for pair in request.query.split(b"&"):
        key, _, value = pair.partition(b"=")
        if key.decode() == name:
            return value.decode()
    return None


def _not_found(kind: str, ident: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(
        error_body(
            f"No {kind} found with id '{ident}'.", "invalid_request_error", None, "not_found"
        )
    )
    return body


def _answer_line(line: dict[str, Any], config: ServerConfig, request_id: str) -> dict[str, Any]:
    """The answer a batch line gets: what the live endpoint would say to its body."""
    url = str(line.get("url", "/v1/chat/completions")).removeprefix("/v1")
    body = line.get("body")
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        raise BadRequest("The request body must be an object with a 'model'.")
    model = body["model"]
    if url == "/embeddings":
        inputs = _inputs(body.get("input"))
        dimensions = body.get("dimensions") or DEFAULT_DIMENSIONS
        tokens = sum(_answers.count_tokens(i) if isinstance(i, str) else len(i) for i in inputs)
        import array
        import base64

        data = []
        for index, item in enumerate(inputs):
            raw = _float32_bytes(_key(item), dimensions)
            if body.get("encoding_format") == "base64":
                vector: Any = base64.b64encode(raw).decode()
            else:
                values = array.array("f")
                values.frombytes(raw)
                vector = values.tolist()
            data.append({"object": "embedding", "index": index, "embedding": vector})
        return {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    if url == "/responses":
        messages = _messages_from_input(body.get("input"))
        if body.get("instructions"):
            messages.insert(0, {"role": "system", "content": body["instructions"]})
        key = _answers.prompt_key(messages, body.get("seed"))
        pieces = _answers.answer_pieces(
            key, 0, config.answer_tokens or _answers.default_answer_length(key)
        )
        limit = body.get("max_output_tokens")
        cut = isinstance(limit, int) and limit < len(pieces)
        if cut:
            pieces = pieces[:limit]
        rendered = _Rendered(
            f"resp_{request_id}",
            model,
            int(time.time()),
            None,
            body.get("instructions"),
            pieces,
            cut,
            _answers.prompt_tokens(messages),
        )
        return rendered.object("incomplete" if cut else "completed")
    if url == "/chat/completions":
        chat_messages = body.get("messages")
        if not isinstance(chat_messages, list) or not chat_messages:
            raise BadRequest("'messages' must be a non-empty array.", "messages")
        key = _answers.prompt_key(chat_messages, body.get("seed"))
        length = config.answer_tokens or _answers.default_answer_length(key)
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        n = body.get("n") or 1
        choices = []
        for index in range(n):
            full = _answers.answer_pieces(key, index, length)
            if limit is not None and limit < len(full):
                choices.append((full[:limit], "length"))
            else:
                choices.append((full, "stop"))
        response = ChatResponse(
            id=f"chatcmpl-{request_id}",
            created=int(time.time()),
            model=model,
            fingerprint=config.system_fingerprint,
            choices=choices,
            prompt_tokens=_answers.prompt_tokens(chat_messages),
            completion_tokens=sum(len(p) for p, _ in choices),
        )
        return response.completion_object()
    raise BadRequest(f"url {line.get('url')!r} is not supported in a batch.")
