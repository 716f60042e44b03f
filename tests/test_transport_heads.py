"""The transport's shortcuts through h11's and httpx's header representations.

TrioTransport._h11_request keeps validated request heads; _httpx_response hands a
parsed response head to httpx without normalising it again.

h11 validates every header of every request; the transport validates a head once and
only appends each request's Content-Length. These tests pin that the shortcut writes
the very bytes h11's full path writes (so an h11 release that changes its private
header representation fails here, loudly), and that every check h11 makes on a head
still refuses a bad one, every time, not only the first.
"""

from __future__ import annotations

import json

import h11
import httpx
import pytest

import trioclient
from trioclient._transport import _MAX_CACHED_HEADS, TrioTransport, _httpx_response

URL = "http://127.0.0.1:9/v1/chat/completions"


def _request(body: bytes, headers: list[tuple[bytes, bytes]] | None = None) -> httpx.Request:
    head = [(b"Host", b"127.0.0.1:9"), (b"Authorization", b"Bearer sk-test"), *(headers or [])]
    return httpx.Request(
        "POST",
        URL,
        headers=[*head, (b"Content-Length", str(len(body)).encode())],
        content=body,
    )


def _wire(event: h11.Request) -> bytes:
    return h11.Connection(h11.CLIENT).send(event)


def _h11_head(transport: TrioTransport, request: httpx.Request) -> h11.Request:
    return transport._h11_request(request, request.url, None)


def test_a_cached_head_writes_what_h11_itself_writes() -> None:
    transport = TrioTransport()
    for body in (b"{}", b'{"model": "m"}', b"x" * 12345, b"{}"):
        request = _request(body, [(b"X-Team", b"search")])
        fast = _h11_head(transport, request)
        full = h11.Request(
            method="POST", target=b"/v1/chat/completions", headers=request.headers.raw
        )
        assert fast == full  # every field of the event, as h11 builds it
        assert fast.headers == full.headers
        assert fast.headers.raw_items() == full.headers.raw_items()
        assert _wire(fast) == _wire(full)
        assert f"Content-Length: {len(body)}\r\n".encode() in _wire(fast)
    assert len(transport._heads) == 1  # one head validated, four requests served


@pytest.mark.parametrize(
    ("extra", "length", "message"),
    [
        ([(b"Bad Header", b"x")], b"2", "Illegal header name"),
        ([(b"X-Value", b"a\nb")], b"2", "Illegal header value"),
        ([], b"2x", "bad Content-Length"),
        ([], b"-2", "bad Content-Length"),
        ([], b"1" * 21, "bad Content-Length"),
        ([(b"Content-Length", b"3")], b"2", "conflicting Content-Length"),
        ([(b"Transfer-Encoding", b"gzip")], b"2", "Transfer-Encoding"),
        ([(b"Host", b"other")], b"2", "multiple Host"),
    ],
)
def test_a_bad_head_is_refused_every_time(
    extra: list[tuple[bytes, bytes]], length: bytes, message: str
) -> None:
    transport = TrioTransport()
    request = httpx.Request(
        "POST",
        URL,
        headers=[(b"Host", b"127.0.0.1:9"), *extra, (b"Content-Length", length)],
        content=b"{}",
    )
    # A good request first, so a bad one meets a warm cache too.
    _h11_head(transport, _request(b"{}"))
    for _ in range(2):
        with pytest.raises(httpx.LocalProtocolError, match=message):
            _h11_head(transport, request)


def test_a_head_with_its_own_framing_is_checked_in_full_each_time() -> None:
    transport = TrioTransport()
    consistent = httpx.Request(
        "POST",
        URL,
        headers=[(b"Host", b"h"), (b"Content-Length", b"2"), (b"Content-Length", b"2")],
        content=b"{}",
    )
    assert _wire(_h11_head(transport, consistent)).count(b"Content-Length") == 1
    conflicting = httpx.Request(
        "POST",
        URL,
        headers=[(b"Host", b"h"), (b"Content-Length", b"2"), (b"Content-Length", b"3")],
        content=b"{}",
    )
    with pytest.raises(httpx.LocalProtocolError, match="conflicting Content-Length"):
        _h11_head(transport, conflicting)


def test_a_head_without_a_length_is_served_as_validated() -> None:
    transport = TrioTransport()
    request = httpx.Request("GET", URL, headers=[(b"Host", b"h"), (b"Accept", b"*/*")])
    first = _h11_head(transport, request)
    assert _h11_head(transport, request) is first
    assert _wire(first) == _wire(
        h11.Request(method="GET", target=b"/v1/chat/completions", headers=request.headers.raw)
    )


def test_the_cache_stays_bounded() -> None:
    transport = TrioTransport()
    for n in range(_MAX_CACHED_HEADS * 2 + 3):
        _h11_head(transport, _request(b"{}", [(b"X-Request", str(n).encode())]))
        assert len(transport._heads) <= _MAX_CACHED_HEADS


@pytest.mark.parametrize(
    ("url", "origin", "target"),
    [
        (
            "http://127.0.0.1:9/v1/chat/completions",
            (b"http", b"127.0.0.1", 9),
            b"/v1/chat/completions",
        ),
        ("http://127.0.0.1:9/v1/embeddings", (b"http", b"127.0.0.1", 9), b"/v1/embeddings"),
        ("http://127.0.0.1:9/v1/models?limit=5", (b"http", b"127.0.0.1", 9), b"/v1/models?limit=5"),
        (
            "http://127.0.0.1:10/v1/chat/completions",
            (b"http", b"127.0.0.1", 10),
            b"/v1/chat/completions",
        ),
        ("http://api.example/v1", (b"http", b"api.example", 80), b"/v1"),
        ("https://api.example/v1", (b"https", b"api.example", 443), b"/v1"),
        ("http://[::1]:9/", (b"http", b"::1", 9), b"/"),
    ],
)
def test_each_url_has_its_own_origin_and_target(
    url: str, origin: tuple[bytes, bytes, int], target: bytes
) -> None:
    """Origins and heads are kept by httpx's parsed URL (private, pinned here): every
    URL of a session gets its own, and a copy of a URL, or the same URL parsed again,
    finds the ones already kept."""
    transport = TrioTransport()
    for other in ("http://127.0.0.1:9/v1/chat/completions", "http://127.0.0.1:9/v1/other"):
        _h11_head(transport, httpx.Request("GET", other))  # kept before, must not be reused
        transport._origin_of(httpx.URL(other))
    kept = len(transport._heads)
    for same in (httpx.URL(url), httpx.URL(httpx.URL(url)), httpx.URL(url).copy_with()):
        request = httpx.Request("GET", same)
        assert transport._origin_of(request.url) == origin
        assert transport._origins[same._uri_reference] == origin
        assert _h11_head(transport, request).target == target
    assert len(transport._heads) <= kept + 1


def test_the_origins_kept_stay_bounded() -> None:
    transport = TrioTransport()
    for n in range(_MAX_CACHED_HEADS * 2 + 3):
        transport._origin_of(httpx.URL(f"http://127.0.0.1:9/v1/{n}"))
        assert len(transport._origins) <= _MAX_CACHED_HEADS


async def test_a_built_request_holds_its_body_as_httpx_would_after_reading_it() -> None:
    """build_request stores the encoded body as the request's content itself (what
    ``Request.read()`` stores, private): content, both iterations and a read all give
    it, every time, as for a request httpx read itself."""
    client = trioclient.Client(api_key="sk-test", base_url="http://127.0.0.1:9/v1")
    body = {"model": "m", "messages": [{"role": "user", "content": "crème"}]}
    request = client.build_request(body)
    content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    read_by_httpx = httpx.Request("POST", request.url, content=content)
    read_by_httpx.read()
    for _ in range(2):  # replayable: a retry sends the same bytes
        assert request.content == read_by_httpx.content == content
        assert b"".join(request.stream) == content  # type: ignore[arg-type]
        assert b"".join([piece async for piece in request.stream]) == content  # type: ignore[union-attr]
        assert request.read() == content
        assert await request.aread() == content
    assert request.headers["content-length"] == str(len(content))


def test_response_headers_reach_httpx_as_httpx_builds_them() -> None:
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method="GET", target="/", headers=[("Host", "h")]))
    conn.send(h11.EndOfMessage())
    conn.receive_data(
        b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: application/json\r\n"
        b"Set-Cookie: a=1\r\nset-cookie: b=2\r\nX-Note: cr\xc3\xa8me\r\n"
        b"Content-Length: 2\r\n\r\n{}"
    )
    head = conn.next_event()
    assert isinstance(head, h11.Response)
    built = httpx.Headers(head.headers.raw_items())
    request = httpx.Request("GET", "http://h/")
    response = _httpx_response(head, httpx.ByteStream(b"{}"), request)
    assert (response.status_code, response.reason_phrase) == (200, "OK")
    assert response.http_version == "HTTP/1.1"
    assert response.request is request
    fast = response.headers
    assert fast._list == built._list
    # What trioclient reads directly (the transport, read_body, the budget look): httpx's
    # own list holds (raw name, lower-case name, value) triples.
    assert built._list[0] == (b"Server", b"server", b"nginx")
    assert all(lower == raw.lower() for raw, lower, _ in built._list)
    assert fast.raw == built.raw
    assert fast.multi_items() == built.multi_items()
    assert fast.encoding == built.encoding == "utf-8"
    assert fast.get_list("set-cookie") == ["a=1", "b=2"]
    assert fast["content-type"] == "application/json"
    assert fast._list is not head.headers._full_items  # a copy: httpx may mutate its own
