"""The models read every documented field, keep odd types, and fail only on unreadable answers.

Plain synchronous tests of the parsers (``from_dict``, :func:`completion_from_response`)
and of the chunk accumulator's rules; the same behaviours through the client, on each
provider's bytes, are in ``test_providers.py``.
"""

from __future__ import annotations

import json
import math
import pickle
from typing import Any

import httpx
import pytest

import trioclient
from trioclient import APIResponseValidationError, ChatCompletion, ChatCompletionChunk
from trioclient._accumulator import ChunkAccumulator
from trioclient._models import completion_from_response


def body(**message: Any) -> dict[str, Any]:
    return {
        "id": "c",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {"index": 0, "message": {"role": "assistant", **message}, "finish_reason": "stop"}
        ],
    }


def response(payload: bytes, status: int = 200) -> httpx.Response:
    request = httpx.Request("POST", "http://127.0.0.1:9/v1/chat/completions")
    return httpx.Response(
        status,
        content=payload,
        headers={"content-type": "application/json", "x-request-id": "req-7"},
        request=request,
    )


# --- tolerant answers -------------------------------------------------------------


def test_a_float_created_and_float_counts_are_read_not_refused() -> None:
    raw = {**body(content="hi"), "created": 1764547200.75}
    raw["usage"] = {"prompt_tokens": 3.0, "completion_tokens": "2", "total_tokens": None}
    c = ChatCompletion.from_dict(raw)
    assert c.created == 1764547200 and c.content == "hi"
    assert c.usage == trioclient.Usage(3, 2, 5)
    assert c.to_dict()["created"] == 1764547200.75  # the value as sent stays reachable


def test_odd_types_in_fields_that_are_not_the_answer_read_as_missing() -> None:
    raw = {**body(content="hi"), "id": 7, "model": None, "system_fingerprint": 3}
    raw["usage"] = {"prompt_tokens": "many"}
    raw["choices"][0]["finish_reason"] = {"type": "stop"}
    c = ChatCompletion.from_dict(raw)
    assert (c.id, c.model, c.system_fingerprint, c.choices[0].finish_reason) == ("", "", None, None)
    assert c.usage is not None and c.usage.prompt_tokens == 0
    assert c.to_dict() == raw


def test_arguments_sent_as_an_object_are_given_as_json_text() -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": {"x": 1}}}
    c = ChatCompletion.from_dict(body(content=None, tool_calls=[call]))
    (tool_call,) = c.choices[0].message.tool_calls
    assert json.loads(tool_call.function.arguments) == {"x": 1}
    assert tool_call.to_dict()["function"]["arguments"] == {"x": 1}


def test_list_content_is_joined_text_with_the_parts_kept() -> None:
    parts = [{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {}}, "b"]
    c = ChatCompletion.from_dict(body(content=parts))
    assert c.content == "ab"
    assert c.choices[0].message.content_parts == tuple(parts)
    assert c.choices[0].message.reasoning_content is None


def test_odd_logprob_entries_are_left_out_not_fatal() -> None:
    raw = body(content="hi")
    token = {"token": "hi", "logprob": "low", "top_logprobs": [7, {"token": "hi", "logprob": -1}]}
    raw["choices"][0]["logprobs"] = {"content": [token, "junk"], "refusal": None}
    logprobs = ChatCompletion.from_dict(raw).choices[0].logprobs
    assert logprobs is not None and logprobs.content is not None
    (entry,) = logprobs.content
    assert entry.token == "hi" and math.isnan(entry.logprob)  # not a number: unknown
    assert [(t.token, t.logprob) for t in entry.top_logprobs] == [("hi", -1.0)]


def test_annotations_are_typed_url_citations() -> None:
    note = {
        "type": "url_citation",
        "url_citation": {"url": "https://e.org", "title": "E", "start_index": 0, "end_index": 2},
    }
    c = ChatCompletion.from_dict(body(content="hi", annotations=[note, "junk"]))
    (annotation,) = c.choices[0].message.annotations
    assert (annotation.type, annotation.url, annotation.title) == (
        "url_citation",
        "https://e.org",
        "E",
    )
    assert (annotation.start_index, annotation.end_index) == (0, 2)


def test_content_shortcuts_refer_to_choice_0_whatever_the_order() -> None:
    raw = body(content="zero")
    raw["choices"].insert(
        0, {"index": 1, "message": {"role": "assistant", "content": "one"}, "finish_reason": "stop"}
    )
    assert ChatCompletion.from_dict(raw).content == "zero"
    chunk = ChatCompletionChunk.from_dict({"choices": [{"index": 1, "delta": {"content": "one"}}]})
    assert chunk.content == ""


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        (b"<html>502 Bad Gateway</html>", "not JSON"),
        (b'{"object": "chat.completion"}', "no 'choices'"),
        (b'{"choices": [{"message": {"content": 5}}]}', r"choices\[0\]\.message\.content"),
        (b'{"choices": [{"message": {}}, {"index": 1}]}', r"choices\[1\]: has no 'message'"),
        (b'{"choices": [{"message": {}}, 7]}', r"choices\[1\]: expected an object, got int"),
        (
            b'{"choices": [{"message": {}}, {"message": {"tool_calls": [{}, 3]}}]}',
            r"choices\[1\]\.message\.tool_calls\[1\]: expected an object",
        ),
    ],
)
def test_an_unreadable_answer_carries_the_body_and_the_response(payload: bytes, match: str) -> None:
    with pytest.raises(APIResponseValidationError, match=match) as caught:
        completion_from_response(response(payload), payload)
    error = caught.value
    assert error.response is not None and error.response.status_code == 200
    assert error.response.headers["x-request-id"] == "req-7"
    assert error.request is not None
    expected = payload.decode() if match == "not JSON" else json.loads(payload)
    assert error.body == expected


def test_a_200_error_body_is_a_provider_error_with_code_message_and_metadata() -> None:
    payload = b'{"error": {"code": 429, "message": "slow down", "metadata": {"retry": 2}}}'
    with pytest.raises(trioclient.ProviderError, match="slow down") as caught:
        completion_from_response(response(payload), payload)
    error = caught.value
    assert (error.code, error.implied_status, error.metadata) == (429, 429, {"retry": 2})
    assert error.response is not None and error.status_code == 200
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.code, copy.metadata, str(copy)) == (429, {"retry": 2}, str(error))


@pytest.mark.parametrize("with_error", [True, False])
def test_a_choice_that_ended_in_error_is_a_provider_error(with_error: bool) -> None:
    raw = body(content="The tall")
    raw["choices"][0]["finish_reason"] = "error"
    if with_error:
        raw["error"] = {"code": 502, "message": "Provider disconnected"}
    payload = json.dumps(raw).encode()
    with pytest.raises(trioclient.ProviderError) as caught:
        completion_from_response(response(payload), payload)
    expected = "Provider disconnected" if with_error else "finish_reason 'error'"
    assert expected in str(caught.value) and caught.value.body == raw


def test_a_vllm_flat_error_object_is_a_provider_error() -> None:
    payload = b'{"object": "error", "message": "bad", "type": "BadRequestError", "code": 400}'
    with pytest.raises(trioclient.ProviderError) as caught:
        completion_from_response(response(payload), payload)
    assert caught.value.implied_status == 400 and caught.value.code == 400


def test_a_status_error_gives_a_numeric_code_as_text() -> None:
    error = trioclient.RateLimitError(
        "x", response=response(b"", 429), body={"error": {"code": 429, "message": "m"}}
    )
    assert error.code == "429"


# --- the accumulator's rules ------------------------------------------------------------


def chunk(*calls: dict[str, Any], index: int = 0, **delta: Any) -> ChatCompletionChunk:
    d: dict[str, Any] = dict(delta)
    if calls:
        d["tool_calls"] = list(calls)
    return ChatCompletionChunk.from_dict({"choices": [{"index": index, "delta": d}]})


def accumulate(*chunks: ChatCompletionChunk) -> ChatCompletion:
    accumulator = ChunkAccumulator()
    for c in chunks:
        accumulator.add(c)
    return accumulator.completion()


def test_arguments_repeated_whole_after_their_fragments_are_kept_once() -> None:
    final = accumulate(
        chunk({"index": 0, "id": "a", "function": {"name": "f", "arguments": '{"x": '}}),
        chunk({"index": 0, "function": {"arguments": "1}"}}),
        chunk({"index": 0, "function": {"arguments": '{"x": 1}'}}),
    )
    (call,) = final.choices[0].message.tool_calls
    assert call.function.arguments == '{"x": 1}'


def test_a_repeat_of_an_incomplete_prefix_is_kept_nothing_is_dropped_on_a_guess() -> None:
    final = accumulate(
        chunk({"index": 0, "id": "a", "function": {"name": "f", "arguments": '{"k": 1'}}),
        chunk({"index": 0, "function": {"arguments": '{"k": 1'}}),
    )
    (call,) = final.choices[0].message.tool_calls
    assert call.function.arguments == '{"k": 1{"k": 1'


def test_a_name_streamed_in_fragments_is_joined() -> None:
    final = accumulate(
        chunk({"id": "g1", "function": {"name": "edit_ex", "arguments": ""}}),
        chunk({"function": {"name": "isting_file", "arguments": "{}"}}),
    )
    (call,) = final.choices[0].message.tool_calls
    assert (call.id, call.function.name, call.function.arguments) == (
        "g1",
        "edit_existing_file",
        "{}",
    )


def test_index_less_pieces_without_an_id_continue_the_last_call() -> None:
    final = accumulate(
        chunk({"id": "a", "function": {"name": "f", "arguments": '{"x":'}}),
        chunk({"function": {"arguments": " 1}"}}),
        chunk({"id": "b", "function": {"name": "g", "arguments": "{}"}}),
    )
    calls = final.choices[0].message.tool_calls
    assert [(c.id, c.function.arguments) for c in calls] == [("a", '{"x": 1}'), ("b", "{}")]


def test_logprobs_refusal_and_annotations_reach_the_final_completion() -> None:
    token = {"token": "No", "logprob": -0.5, "bytes": [78, 111], "top_logprobs": []}
    note = {"type": "url_citation", "url_citation": {"url": "https://e.org"}}
    first = ChatCompletionChunk.from_dict(
        {"choices": [{"index": 0, "delta": {"refusal": "No"}, "logprobs": {"refusal": [token]}}]}
    )
    final = accumulate(first, chunk(annotations=[note]))
    choice = final.choices[0]
    assert choice.message.refusal == "No"
    assert choice.logprobs is not None and choice.logprobs.refusal is not None
    assert [t.token for t in choice.logprobs.refusal] == ["No"]
    assert [a.url for a in choice.message.annotations] == ["https://e.org"]
