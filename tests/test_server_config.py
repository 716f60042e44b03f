"""Config values, latency distributions, the toy tokenizer and answer generation."""

from __future__ import annotations

import random
import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trioclient.testing import Distribution, FaultParams, ServerConfig, parse_distribution
from trioclient.testing._answers import (
    answer_pieces,
    count_tokens,
    default_answer_length,
    prompt_key,
    prompt_tokens,
    split_tokens,
)
from trioclient.testing._faults import FaultPicker


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0.2", Distribution.fixed(0.2)),
        ("fixed:1", Distribution.fixed(1.0)),
        ("uniform:0.1,0.3", Distribution.uniform(0.1, 0.3)),
        ("lognormal:0.2,0.5", Distribution.lognormal(0.2, 0.5)),
        (" inf ", Distribution.fixed(float("inf"))),
    ],
)
def test_parse_distribution(text: str, expected: Distribution) -> None:
    assert parse_distribution(text) == expected


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("fast", "numbers"),
        ("gamma:1,2", "kind must be"),
        ("uniform:1", "takes 2"),
        ("uniform:3,1", "a <= b"),
        ("-1", ">= 0"),
        ("lognormal:0,1", "median"),
    ],
)
def test_parse_distribution_names_the_problem(text: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        parse_distribution(text)


def test_distributions_sample_within_their_shape() -> None:
    rng = random.Random(5)
    uniform = [Distribution.uniform(0.1, 0.3).sample(rng) for _ in range(2000)]
    assert 0.1 <= min(uniform) and max(uniform) <= 0.3
    assert statistics.mean(uniform) == pytest.approx(0.2, abs=0.01)
    lognormal = [Distribution.lognormal(0.2, 0.5).sample(rng) for _ in range(4000)]
    assert statistics.median(lognormal) == pytest.approx(0.2, rel=0.06)
    assert max(lognormal) > 0.5  # a long right tail
    assert Distribution.fixed(0.7).sample(rng) == 0.7
    assert str(Distribution.uniform(0.1, 0.3)) == "uniform:0.1,0.3"


def test_server_config_converts_and_validates() -> None:
    config = ServerConfig(ttft="uniform:0.1,0.2", tps=30, faults={"http_500": 0.1})
    assert config.ttft == Distribution.uniform(0.1, 0.2)
    assert config.tps == Distribution.fixed(30)
    assert config.faults == (("http_500", 0.1),)
    with pytest.raises(ValueError, match="unknown fault"):
        ServerConfig(faults={"http_600": 0.1})
    with pytest.raises(ValueError, match="more than 1"):
        ServerConfig(faults={"http_500": 0.7, "http_503": 0.6})
    with pytest.raises(ValueError, match="rpm"):
        ServerConfig(rpm=0)
    with pytest.raises(ValueError, match="port"):
        ServerConfig(port=70000)
    with pytest.raises(ValueError, match="stall_seconds"):
        FaultParams(stall_seconds=-1)
    assert "sk-secret" not in repr(ServerConfig(api_key="sk-secret"))


def test_fault_picker_script_then_probabilities() -> None:
    picker = FaultPicker(random.Random(1))
    picker.add_script([None, "http_500"])
    table = (("http_503", 1.0),)
    assert [picker.pick(table), picker.pick(table), picker.pick(table)] == [
        None,
        "http_500",
        "http_503",
    ]
    assert picker.pick(()) is None


@given(st.text())
def test_pieces_rebuild_the_text_and_count_as_tokens(text: str) -> None:
    pieces = split_tokens(text)
    assert "".join(pieces) == text.rstrip() or "".join(pieces) == text[: len("".join(pieces))]
    assert len(pieces) == count_tokens(text)


@given(
    st.lists(st.text(min_size=0, max_size=60), min_size=1, max_size=4),
    st.integers(min_value=1, max_value=80),
    st.integers(min_value=0, max_value=3),
)
def test_answers_have_exactly_the_asked_length(
    contents: list[str], length: int, index: int
) -> None:
    messages = [{"role": "user", "content": c} for c in contents]
    pieces = answer_pieces(prompt_key(messages, None), index, length)
    assert len(pieces) == length
    assert count_tokens("".join(pieces)) == length


def test_default_answer_length_is_20_to_40_and_stable() -> None:
    lengths = {
        default_answer_length(prompt_key([{"role": "user", "content": f"q{i}"}], None))
        for i in range(200)
    }
    assert min(lengths) >= 20 and max(lengths) <= 40 and len(lengths) > 10
    key = prompt_key([{"role": "user", "content": "same"}], 3)
    assert default_answer_length(key) == default_answer_length(key)


def test_prompt_tokens_count_text_overhead_and_parts() -> None:
    one = prompt_tokens([{"role": "user", "content": "hello world"}])
    two = prompt_tokens(
        [{"role": "user", "content": "hello world"}, {"role": "user", "content": ""}]
    )
    assert two - one == 3  # per-message overhead
    parts = prompt_tokens([{"role": "user", "content": [{"type": "text", "text": "hello world"}]}])
    assert parts == one
    image = prompt_tokens(
        [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]
    )
    assert image > prompt_tokens([{"role": "user", "content": []}])
