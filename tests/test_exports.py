"""The public surface: every name is reachable from `trioclient` and says so in tracebacks."""

from __future__ import annotations

import subprocess
import sys

import trioclient

PUBLIC = {
    "Annotation",
    "ChoiceLogprobs",
    "CompletionTokensDetails",
    "PromptTokensDetails",
    "ProviderError",
    "TokenLogprob",
    "TopLogprob",
    "APIConnectionError",
    "APIError",
    "APIResponseValidationError",
    "APIStatusError",
    "APIStreamError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "Chat",
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatCompletionMessage",
    "ChatCompletionStream",
    "Choice",
    "ChoiceDelta",
    "ChoiceDeltaToolCall",
    "ChunkChoice",
    "Client",
    "ClientStatistics",
    "ConflictError",
    "CreateEmbeddingResponse",
    "DEFAULT_BASE_URL",
    "Embedding",
    "FunctionCall",
    "IncompleteStreamError",
    "InternalServerError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "RedisBudget",
    "RemoteBatchProgress",
    "RemoteBatchRunner",
    "ResponseTooLargeError",
    "RawResponse",
    "Response",
    "Model",
    "ModelList",
    "ResponseObject",
    "ResponseStream",
    "ResponseStreamEvent",
    "ResponseUsage",
    "RetryPolicy",
    "SharedBudgetError",
    "SharedBudgetStatistics",
    "Timeout",
    "ToolCall",
    "UnprocessableEntityError",
    "Usage",
    "assistant",
    "run_remote_batch_file",
    "system",
    "testing",
    "tool_result",
    "user",
}


def test_every_public_name_resolves_and_names_the_package() -> None:
    listed = {name for name in dir(trioclient) if not name.startswith("_")}
    assert PUBLIC <= listed, PUBLIC - listed
    for name in PUBLIC - {"testing", "sse", "DEFAULT_BASE_URL"}:
        value = getattr(trioclient, name)
        assert value.__module__ == "trioclient", (name, value.__module__)


def test_exception_tree() -> None:
    t = trioclient
    assert issubclass(t.APITimeoutError, t.APIConnectionError)
    assert issubclass(t.IncompleteStreamError, t.APIConnectionError)
    for cls in (
        t.BadRequestError,
        t.AuthenticationError,
        t.PermissionDeniedError,
        t.NotFoundError,
        t.ConflictError,
        t.UnprocessableEntityError,
        t.RateLimitError,
        t.InternalServerError,
    ):
        assert issubclass(cls, t.APIStatusError)
    for cls in (
        t.APIConnectionError,
        t.APIStatusError,
        t.APIStreamError,
        t.APIResponseValidationError,
        t.ResponseTooLargeError,
    ):
        assert issubclass(cls, t.APIError)


def test_unknown_names_are_attribute_errors() -> None:
    try:
        trioclient.no_such_thing  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as exc:
        assert "no_such_thing" in str(exc)
    else:
        raise AssertionError("expected AttributeError")


# What `import trioclient` leaves for later: the answer models (the first answer), and
# what only building a client needs (proxy routing, the header budget and its pacing,
# the models list), besides the endpoints, the transport, the batch engine and the rest.
LOADED_LATER = (
    "trioclient._models",
    "trioclient._proxy",
    "trioclient._header_budget",
    "trioclient._pacing",
    "trioclient._model_list",
    "trioclient._transport",
    "trioclient._batch",
)


def test_parts_load_on_first_use_not_on_import() -> None:
    code = (
        "import sys, trioclient; "
        f"print(sorted(name for name in {LOADED_LATER!r} if name in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_first_client_loads_what_building_one_needs() -> None:
    code = (
        "import sys, trioclient; trioclient.Client(api_key='k', base_url='http://h/v1'); "
        "print(all(m in sys.modules for m in ('trioclient._header_budget', "
        "'trioclient._proxy', 'trioclient._model_list'))); "
        "print(trioclient.Model.__name__, trioclient.ModelList.__name__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "Model", "ModelList"]
