"""Rate limits: the duration format, the buckets, and the server's 429s and headers."""

from __future__ import annotations

import json
import math
import re

import httpx
import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from trioclient.testing import format_duration, open_server
from trioclient.testing._ratelimit import RateLimiter, TokenBucket

BODY = {"model": "m", "messages": [{"role": "user", "content": "count my tokens please"}]}
RATE_HEADERS = [
    f"x-ratelimit-{kind}-{what}"
    for kind in ("limit", "remaining", "reset")
    for what in ("requests", "tokens")
]


def parse_duration(text: str) -> float:
    """An independent reading of the format: h, m, s and ms parts."""
    match = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m(?!s))?(?:([\d.]+)s)?(?:([\d.]+)ms)?", text)
    assert match and text, text
    hours, minutes, seconds, millis = (float(g) if g else 0.0 for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds + millis / 1000


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.02, "20ms"),
        (0.0005, "0.5ms"),
        (0.9995, "999.5ms"),
        (1, "1s"),
        (1.5, "1.5s"),
        (17.635, "17.635s"),
        (60, "1m0s"),
        (90.5, "1m30.5s"),
        (360, "6m0s"),
        (3600, "1h0m0s"),
        (3723.25, "1h2m3.25s"),
    ],
)
def test_format_duration_matches_openai_style(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@given(st.floats(min_value=0, max_value=100_000, allow_nan=False))
def test_format_duration_round_trips_to_the_millisecond(seconds: float) -> None:
    text = format_duration(seconds)
    assert abs(parse_duration(text) - seconds) <= 0.0005 + 1e-9


@pytest.mark.parametrize("bad", [-1.0, math.inf, math.nan])
def test_format_duration_rejects_nonsense(bad: float) -> None:
    with pytest.raises(ValueError, match="duration"):
        format_duration(bad)


def test_token_bucket_starts_full_and_refills_continuously() -> None:
    bucket = TokenBucket.per_minute(60, now=0.0)
    assert bucket.wait_for(60, 0.0) == 0
    bucket.take(60)
    assert bucket.wait_for(1, 0.0) == pytest.approx(1.0)
    assert bucket.wait_for(1, 0.5) == pytest.approx(0.5)
    assert bucket.wait_for(1, 1.0) == 0
    assert bucket.time_to_full() == pytest.approx(59.0)
    assert bucket.wait_for(61, 1.0) == math.inf
    assert bucket.wait_for(1, 10_000.0) == 0
    assert bucket.level == 60  # never above capacity


def test_limiter_checks_both_buckets_before_charging_either() -> None:
    limiter = RateLimiter(rpm=10, tpm=100)
    assert limiter.check("k", 90, 0.0).limited is None
    refused = limiter.check("k", 20, 0.0)
    assert refused.limited == "tokens"
    assert refused.retry_after == pytest.approx(10 / (100 / 60))
    headers = dict(refused.headers)
    assert headers[b"x-ratelimit-remaining-requests"] == b"9"  # the refusal took nothing
    assert headers[b"x-ratelimit-remaining-tokens"] == b"10"
    assert limiter.check("other-key", 90, 0.0).limited is None  # per key


def test_limiter_without_limits_admits_everything_and_sends_no_headers() -> None:
    limiter = RateLimiter(rpm=None, tpm=None)
    decision = limiter.check("k", 10**9, 0.0)
    assert decision.limited is None and decision.headers == ()


async def post(
    client: httpx.AsyncClient, url: str, key: str = "sk-a", **body: object
) -> httpx.Response:
    return await client.post(url, json={**BODY, **body}, headers={"authorization": f"Bearer {key}"})


async def test_rpm_429_has_retry_after_and_every_chat_response_has_the_headers() -> None:
    with trio.fail_after(10):
        async with open_server(rpm=3, tpm=10_000) as server, httpx.AsyncClient() as client:
            url = server.base_url + "/chat/completions"
            responses = [await post(client, url) for _ in range(4)]
            other_key = await post(client, url, key="sk-b")
            bad = await client.post(url, content=b"{", headers={"authorization": "Bearer sk-c"})
    assert [r.status_code for r in responses] == [200, 200, 200, 429]
    assert other_key.status_code == 200
    for response in [*responses, other_key]:
        assert all(name in response.headers for name in RATE_HEADERS), response.headers
    assert bad.status_code == 400  # rejected before the limiter: no charge, no headers
    remaining = [int(r.headers["x-ratelimit-remaining-requests"]) for r in responses]
    assert remaining == [2, 1, 0, 0]
    assert responses[0].headers["x-ratelimit-limit-requests"] == "3"
    assert responses[0].headers["x-ratelimit-limit-tokens"] == "10000"
    assert 19 <= parse_duration(responses[0].headers["x-ratelimit-reset-requests"]) <= 20
    limited = responses[3]
    error = limited.json()["error"]
    assert error["type"] == "requests"
    assert error["code"] == "rate_limit_exceeded"
    assert error["message"].startswith("Rate limit reached for requests")
    retry_ms = int(limited.headers["retry-after-ms"])
    assert 19_000 <= retry_ms <= 20_000
    assert int(limited.headers["retry-after"]) == math.ceil(retry_ms / 1000)
    assert server.statistics().rate_limited == 1


async def test_tpm_counts_prompt_plus_max_tokens() -> None:
    with trio.fail_after(10):
        async with open_server(tpm=200) as server, httpx.AsyncClient() as client:
            url = server.base_url + "/chat/completions"
            first = await post(client, url, max_tokens=150)
            used = 200 - int(first.headers["x-ratelimit-remaining-tokens"])
            second = await post(client, url, max_tokens=150)
            third = await post(client, url, max_tokens=1)
    prompt = first.json()["usage"]["prompt_tokens"]
    assert used == prompt + 150
    assert second.status_code == 429
    assert second.json()["error"]["type"] == "tokens"
    assert "retry-after-ms" in second.headers
    assert third.status_code == 200  # a smaller request still fits


async def test_default_answer_length_is_the_tpm_estimate_without_max_tokens() -> None:
    with trio.fail_after(10):
        async with (
            open_server(tpm=10_000, answer_tokens=17) as server,
            httpx.AsyncClient() as client,
        ):
            response = await post(client, server.base_url + "/chat/completions", n=2)
    usage = response.json()["usage"]
    used = 10_000 - int(response.headers["x-ratelimit-remaining-tokens"])
    assert used == usage["prompt_tokens"] + 2 * 17


async def test_request_larger_than_the_tpm_limit_is_refused_without_retry_after() -> None:
    with trio.fail_after(10):
        async with open_server(tpm=50) as server, httpx.AsyncClient() as client:
            response = await post(client, server.base_url + "/chat/completions", max_tokens=100)
    assert response.status_code == 429
    assert "retry-after" not in response.headers
    assert "Request too large" in response.json()["error"]["message"]


async def test_buckets_refill_in_real_time() -> None:
    with trio.fail_after(10):
        async with open_server(rpm=120) as server, httpx.AsyncClient() as client:  # 2/s
            url = server.base_url + "/chat/completions"
            for _ in range(200):  # drain the burst (it refills a little meanwhile)
                limited = await post(client, url)
                if limited.status_code == 429:
                    break
            assert limited.status_code == 429
            wait = int(limited.headers["retry-after-ms"])
            assert 0 < wait <= 500
            await trio.sleep(wait / 1000 + 0.02)
            assert (await post(client, url)).status_code == 200


async def test_insufficient_quota_mode() -> None:
    with trio.fail_after(10):
        async with open_server(insufficient_quota=True) as server, httpx.AsyncClient() as client:
            response = await post(client, server.base_url + "/chat/completions")
    assert response.status_code == 429
    error = response.json()["error"]
    assert error["type"] == error["code"] == "insufficient_quota"
    assert error["message"].startswith("You exceeded your current quota")
    assert "retry-after" not in response.headers
    assert "retry-after-ms" not in response.headers


async def test_changing_limits_at_run_time_starts_fresh_buckets() -> None:
    with trio.fail_after(10):
        async with open_server(rpm=1) as server, httpx.AsyncClient() as client:
            url = server.base_url + "/chat/completions"
            assert (await post(client, url)).status_code == 200
            assert (await post(client, url)).status_code == 429
            server.set_config(rpm=5)
            response = await post(client, url)
    assert response.status_code == 200
    assert response.headers["x-ratelimit-limit-requests"] == "5"
    assert json.loads(response.text)["object"] == "chat.completion"
