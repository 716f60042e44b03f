"""trioclient: chat completions at volume, with Trio's structured concurrency.

::

    import trio, trioclient

    async def main():
        async with trioclient.Client() as client:  # XAI_API_KEY, https://api.x.ai/v1
            answer = await client.chat.completions.create(
                model="grok-4", messages=[{"role": "user", "content": "Hello"}]
            )
            print(answer.content)

    trio.run(main)

The public names live here; the modules behind them are private. ``trioclient.testing``
(the embedded server) and ``trioclient.cli`` load only when used, so ``import trioclient``
stays cheap.
"""

from typing import TYPE_CHECKING, Any

from ._client import Client as Client
from ._client import ClientStatistics as ClientStatistics
from ._client import RawResponse as RawResponse
from ._config import DEFAULT_BASE_URL as DEFAULT_BASE_URL
from ._config import Timeout as Timeout
from ._exceptions import APIConnectionError as APIConnectionError
from ._exceptions import APIError as APIError
from ._exceptions import APIResponseValidationError as APIResponseValidationError
from ._exceptions import APIStatusError as APIStatusError
from ._exceptions import APIStreamError as APIStreamError
from ._exceptions import APITimeoutError as APITimeoutError
from ._exceptions import AuthenticationError as AuthenticationError
from ._exceptions import BadRequestError as BadRequestError
from ._exceptions import ConflictError as ConflictError
from ._exceptions import IncompleteStreamError as IncompleteStreamError
from ._exceptions import InternalServerError as InternalServerError
from ._exceptions import NotFoundError as NotFoundError
from ._exceptions import PermissionDeniedError as PermissionDeniedError
from ._exceptions import ProviderError as ProviderError
from ._exceptions import RateLimitError as RateLimitError
from ._exceptions import ResponseTooLargeError as ResponseTooLargeError
from ._exceptions import UnprocessableEntityError as UnprocessableEntityError
from ._retry import RetryPolicy as RetryPolicy
from ._version import __version__ as __version__

if TYPE_CHECKING:
    from . import sse as sse
    from . import testing as testing
    from ._batch import BatchResults as BatchResults
    from ._batch_file import BatchFileError as BatchFileError
    from ._batch_file import BatchFileRunner as BatchFileRunner
    from ._batch_file import BatchFileSummary as BatchFileSummary
    from ._batch_file import run_batch_file as run_batch_file
    from ._batch_results import BatchError as BatchError
    from ._batch_results import BatchProgress as BatchProgress
    from ._batch_results import BatchResult as BatchResult
    from ._chat import Chat as Chat
    from ._chat import Response as Response
    from ._chat import assistant as assistant
    from ._chat import system as system
    from ._chat import tool_result as tool_result
    from ._chat import user as user
    from ._embeddings import CreateEmbeddingResponse as CreateEmbeddingResponse
    from ._embeddings import Embedding as Embedding
    from ._model_list import Model as Model
    from ._model_list import ModelList as ModelList
    from ._models import Annotation as Annotation
    from ._models import ChatCompletion as ChatCompletion
    from ._models import ChatCompletionChunk as ChatCompletionChunk
    from ._models import ChatCompletionMessage as ChatCompletionMessage
    from ._models import Choice as Choice
    from ._models import ChoiceDelta as ChoiceDelta
    from ._models import ChoiceDeltaToolCall as ChoiceDeltaToolCall
    from ._models import ChoiceLogprobs as ChoiceLogprobs
    from ._models import ChunkChoice as ChunkChoice
    from ._models import CompletionTokensDetails as CompletionTokensDetails
    from ._models import FunctionCall as FunctionCall
    from ._models import PromptTokensDetails as PromptTokensDetails
    from ._models import TokenLogprob as TokenLogprob
    from ._models import ToolCall as ToolCall
    from ._models import TopLogprob as TopLogprob
    from ._models import Usage as Usage
    from ._remote_batch import RemoteBatchProgress as RemoteBatchProgress
    from ._remote_batch import RemoteBatchRunner as RemoteBatchRunner
    from ._remote_batch import run_remote_batch_file as run_remote_batch_file
    from ._responses import ResponseObject as ResponseObject
    from ._responses import ResponseStream as ResponseStream
    from ._responses import ResponseStreamEvent as ResponseStreamEvent
    from ._responses import ResponseUsage as ResponseUsage
    from ._shared_budget import RedisBudget as RedisBudget
    from ._shared_budget import SharedBudgetError as SharedBudgetError
    from ._shared_budget import SharedBudgetStatistics as SharedBudgetStatistics
    from ._stream import ChatCompletionStream as ChatCompletionStream
    from ._transport import TrioTransport as TrioTransport

# Loaded on first use: the models are needed only once an answer arrives, and the
# server, the CLI and the batch engine only by programs that use them.
_LAZY = {
    **{
        name: ("._models", name)
        for name in (
            "Annotation",
            "ChatCompletion",
            "ChatCompletionChunk",
            "ChatCompletionMessage",
            "Choice",
            "ChoiceDelta",
            "ChoiceDeltaToolCall",
            "ChoiceLogprobs",
            "ChunkChoice",
            "CompletionTokensDetails",
            "FunctionCall",
            "PromptTokensDetails",
            "TokenLogprob",
            "ToolCall",
            "TopLogprob",
            "Usage",
        )
    },
    **{
        name: ("._chat", name)
        for name in ("Chat", "Response", "assistant", "system", "tool_result", "user")
    },
    **{
        name: ("._batch_results", name)
        for name in ("BatchError", "BatchProgress", "BatchResult")
    },
    "BatchResults": ("._batch", "BatchResults"),
    **{
        name: ("._batch_file", name)
        for name in ("BatchFileError", "BatchFileRunner", "BatchFileSummary", "run_batch_file")
    },
    **{
        name: ("._shared_budget", name)
        for name in ("RedisBudget", "SharedBudgetError", "SharedBudgetStatistics")
    },
    **{name: ("._embeddings", name) for name in ("CreateEmbeddingResponse", "Embedding")},
    **{
        name: ("._responses", name)
        for name in ("ResponseObject", "ResponseStream", "ResponseStreamEvent", "ResponseUsage")
    },
    **{
        name: ("._remote_batch", name)
        for name in ("RemoteBatchProgress", "RemoteBatchRunner", "run_remote_batch_file")
    },
    **{name: ("._model_list", name) for name in ("Model", "ModelList")},
    "ChatCompletionStream": ("._stream", "ChatCompletionStream"),
    "TrioTransport": ("._transport", "TrioTransport"),
    "sse": (".sse", None),
    "testing": (".testing", None),
}


def __getattr__(name: str) -> Any:
    # Heavier parts load on first use, so `import trioclient` costs little more than
    # importing its dependencies.
    try:
        module_name, attribute = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'trioclient' has no attribute {name!r}") from None
    import importlib

    module = importlib.import_module(module_name, __name__)
    value = module if attribute is None else getattr(module, attribute)
    if attribute is not None and getattr(value, "__module__", "").startswith("trioclient._"):
        value.__module__ = __name__
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


def _fix_module_names() -> None:
    # Tracebacks and docs say `trioclient.Client`, not `trioclient._client.Client`.
    for name, value in list(globals().items()):
        if not name.startswith("_") and getattr(value, "__module__", "").startswith("trioclient._"):
            try:
                value.__module__ = __name__
            except (AttributeError, TypeError):
                pass


_fix_module_names()
del _fix_module_names
