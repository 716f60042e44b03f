"""Proxies (plain forwarding and CONNECT), NO_PROXY, trust_env, and plain http to a
self-hosted server by name.

The proxy here is written for the test on raw trio sockets: it records what it was
asked, forwards plain http requests (absolute-form target rewritten to origin-form)
and opens CONNECT tunnels, always to the one upstream test server whatever host was
named, so names like ``vllm.internal`` need no DNS. Where the client itself must
resolve such a name, trio's custom hostname resolver maps it to 127.0.0.1.
"""

from __future__ import annotations

import base64
import functools
import re
import shutil
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import attrs
import httpx
import pytest
import trio
from test_transport import LIMIT, Certificate, echo, open_server, send, tls_echo
from test_transport_reuse import answer_completions

import trioclient
from trioclient._proxy import resolve_proxy_routes
from trioclient._transport import TrioTransport

MESSAGES = [{"role": "user", "content": "hi"}]


@attrs.define
class Proxy:
    """What the test proxy saw: one (method, target, headers) per request it handled."""

    port: int = 0
    connections: int = 0
    seen: list[tuple[bytes, bytes, dict[bytes, bytes]]] = attrs.field(factory=list)
    # Every byte the client sent through CONNECT tunnels.
    tunnelled: bytearray = attrs.field(factory=bytearray)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


async def pipe(
    source: trio.SocketStream,
    sink: trio.SocketStream,
    done: trio.CancelScope,
    record: bytearray | None = None,
) -> None:
    try:
        while data := await source.receive_some(65536):
            if record is not None:
                record += data
            await sink.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    done.cancel()


@asynccontextmanager
async def open_proxy(
    upstream_port: int, *, credentials: bytes | None = None
) -> AsyncIterator[Proxy]:
    """A forwarding and CONNECT proxy in front of ``127.0.0.1:upstream_port``.

    With ``credentials`` (a whole ``Proxy-Authorization`` value), anything else is
    answered 407."""
    proxy = Proxy()

    async def on_connection(client: trio.SocketStream) -> None:
        proxy.connections += 1
        buffer = bytearray()
        while b"\r\n\r\n" not in buffer:
            data = await client.receive_some(65536)
            if not data:
                return
            buffer += data
        head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
        request_line, *header_lines = head.split(b"\r\n")
        method, target, version = request_line.split(b" ")
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        proxy.seen.append((method, target, headers))
        if credentials is not None and headers.get(b"proxy-authorization") != credentials:
            await client.send_all(
                b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                b'Proxy-Authenticate: Basic realm="test"\r\n'
                b"Content-Length: 0\r\nConnection: close\r\n\r\n"
            )
            return
        upstream = await trio.open_tcp_stream("127.0.0.1", upstream_port)
        record = None
        if method == b"CONNECT":
            await client.send_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            first = rest
            record = proxy.tunnelled
            record += rest
        else:
            path = httpx.URL(target.decode()).raw_path
            forwarded = [line for line in header_lines if not line.lower().startswith(b"proxy-")]
            first = b"\r\n".join([b" ".join([method, path, version]), *forwarded]) + b"\r\n\r\n"
            first += rest
        async with upstream, trio.open_nursery() as nursery:
            if first:
                await upstream.send_all(first)
            nursery.start_soon(pipe, client, upstream, nursery.cancel_scope, record)
            nursery.start_soon(pipe, upstream, client, nursery.cancel_scope)

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, on_connection, 0, host="127.0.0.1")
        )
        proxy.port = listeners[0].socket.getsockname()[1]
        yield proxy
        nursery.cancel_scope.cancel()


class LoopbackNames(trio.abc.HostnameResolver):
    """Resolves the given names to 127.0.0.1, and nothing else."""

    def __init__(self, *names: str) -> None:
        self.names = names
        self.asked: list[str] = []

    async def getaddrinfo(
        self,
        host: bytes | None,
        port: bytes | str | int | None,
        family: int = 0,
        type: int = 0,
        proto: int = 0,
        flags: int = 0,
    ) -> list[tuple[socket.AddressFamily, socket.SocketKind, int, str, tuple[str, int]]]:
        name = host.decode() if isinstance(host, bytes) else str(host)
        self.asked.append(name)
        if name not in self.names:
            raise socket.gaierror(socket.EAI_NONAME, f"{name} is unknown in this test")
        assert port is not None
        return [
            (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("127.0.0.1", int(port)))
        ]

    async def getnameinfo(
        self, sockaddr: tuple[str, int] | tuple[str, int, int, int], flags: int
    ) -> tuple[str, str]:
        raise NotImplementedError


@pytest.fixture
async def loopback_names() -> LoopbackNames:
    resolver = LoopbackNames("vllm.internal", "api.example.test")
    trio.socket.set_custom_hostname_resolver(resolver)
    return resolver


@pytest.fixture(autouse=True)
def _no_cgi(monkeypatch: pytest.MonkeyPatch) -> None:
    # (conftest clears the proxy variables themselves.)
    monkeypatch.delenv("REQUEST_METHOD", raising=False)


@pytest.fixture(scope="module")
def named_certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    """A self-signed certificate for api.example.test."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    tmp = tmp_path_factory.mktemp("tls-named")
    cert, key = str(tmp / "cert.pem"), str(tmp / "key.pem")
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "2", "-subj", "/CN=api.example.test",
         "-addext", "subjectAltName=DNS:api.example.test", "-keyout", key, "-out", cert],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return Certificate(cert=cert, key=key)


def basic(user: str, password: str) -> bytes:
    return b"Basic " + base64.b64encode(f"{user}:{password}".encode())


# --- through a proxy ----------------------------------------------------------------------


async def test_plain_http_is_forwarded_through_the_proxy() -> None:
    with trio.fail_after(LIMIT):
        async with open_server(echo) as server, open_proxy(server.port) as proxy:
            transport = TrioTransport(proxy=f"http://user:p%40ss@127.0.0.1:{proxy.port}")
            got = await send(transport, "GET", "http://vllm.internal:8000/v1/models?x=1")
            assert got.json()["headers"]["host"] == "vllm.internal:8000"
            # (This proxy pipes the rest of a connection as is, so the second request
            # reaches the server in the absolute form the proxy was sent.)
            again = await send(transport, "GET", "http://vllm.internal:8000/v1/models?x=2")
            assert again.json()["target"] == "http://vllm.internal:8000/v1/models?x=2"
            await transport.aclose()
    method, target, headers = proxy.seen[0]
    assert (method, target) == (b"GET", b"http://vllm.internal:8000/v1/models?x=1")
    assert headers[b"proxy-authorization"] == basic("user", "p@ss")
    assert proxy.connections == 1 and server.accepts == 1  # kept alive through the proxy


async def test_https_goes_through_a_connect_tunnel(named_certificate: Certificate) -> None:
    context = ssl.create_default_context(cafile=named_certificate.cert)
    with trio.fail_after(LIMIT):
        async with open_server(tls_echo(named_certificate)) as server:
            async with open_proxy(server.port, credentials=basic("u", "pw")) as proxy:
                transport = TrioTransport(ssl_context=context, proxy=f"http://u:pw@{proxy.url[7:]}")
                for _ in range(2):
                    got = await send(
                        transport, "POST", "https://api.example.test/v1/x", content=b"top secret"
                    )
                    assert got.json()["body"] == "top secret"
                    assert got.json()["headers"]["host"] == "api.example.test"
                await transport.aclose()
    method, target, headers = proxy.seen[0]
    assert (method, target) == (b"CONNECT", b"api.example.test:443")
    assert headers[b"host"] == b"api.example.test:443"
    assert headers[b"proxy-authorization"] == basic("u", "pw")
    assert len(proxy.seen) == 1 and server.accepts == 1  # one tunnel, reused
    assert proxy.tunnelled and b"top secret" not in proxy.tunnelled  # encrypted end to end


async def test_a_refused_tunnel_is_a_proxy_error_without_the_password() -> None:
    with trio.fail_after(LIMIT):
        async with open_server(echo) as server:
            async with open_proxy(server.port, credentials=basic("u", "right")) as proxy:
                transport = TrioTransport(proxy=f"http://u:wrong-secret@127.0.0.1:{proxy.port}")
                request = httpx.Request("GET", "https://api.example.test/")
                with pytest.raises(httpx.ProxyError) as info:
                    await transport.handle_async_request(request)
                await transport.aclose()
    message = str(info.value)
    assert "407" in message and "api.example.test:443" in message
    assert "user and password" in message
    assert "wrong-secret" not in message
    assert info.value.request is request


async def test_client_reaches_a_self_hosted_server_through_the_environment_proxy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with trio.fail_after(LIMIT):
        async with open_server(answer_completions) as server, open_proxy(server.port) as proxy:
            monkeypatch.setenv("HTTP_PROXY", f"127.0.0.1:{proxy.port}")  # no scheme: http
            async with trioclient.Client(
                api_key="sk-test", base_url="http://vllm.internal:8000/v1"
            ) as client:
                answer = await client.chat.completions.create(model="m", messages=MESSAGES)
    assert answer.content == "hello"
    assert proxy.seen[0][:2] == (b"POST", b"http://vllm.internal:8000/v1/chat/completions")
    # The key went to the proxy as the server's header, never as proxy credentials.
    assert proxy.seen[0][2][b"authorization"] == b"Bearer sk-test"


@pytest.mark.parametrize(
    ("variables", "url"),
    [
        ({"HTTP_PROXY": "{proxy}"}, "http://vllm.internal:8000/"),
        ({"http_proxy": "{proxy}", "HTTP_PROXY": "http://127.0.0.1:9"}, "http://vllm.internal/"),
        ({"ALL_PROXY": "{proxy}"}, "http://vllm.internal:8000/"),
        ({"https_proxy": "{proxy}"}, "https://api.example.test/"),
        ({"all_proxy": "{proxy}", "HTTP_PROXY": "http://127.0.0.1:9"}, "https://api.example.test/"),
    ],
    ids=["HTTP_PROXY", "lower-case-wins", "ALL_PROXY", "https_proxy", "ALL_PROXY-for-https"],
)
async def test_environment_proxies_are_honoured_by_default(
    variables: dict[str, str],
    url: str,
    named_certificate: Certificate,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    https = url.startswith("https")
    handler = tls_echo(named_certificate) if https else echo
    with trio.fail_after(LIMIT):
        async with open_server(handler) as server, open_proxy(server.port) as proxy:
            for name, value in variables.items():
                monkeypatch.setenv(name, value.format(proxy=proxy.url))
            transport = TrioTransport(
                ssl_context=ssl.create_default_context(cafile=named_certificate.cert)
            )
            got = await send(transport, "GET", url)
            await transport.aclose()
    assert got.status_code == 200
    assert proxy.seen[0][0] == (b"CONNECT" if https else b"GET")


async def test_no_proxy_and_trust_env_false_go_direct(
    loopback_names: LoopbackNames, monkeypatch: pytest.MonkeyPatch
) -> None:
    with trio.fail_after(LIMIT):
        async with open_server(echo) as server, open_proxy(server.port) as proxy:
            monkeypatch.setenv("HTTP_PROXY", proxy.url)
            url = f"http://vllm.internal:{server.port}/"
            monkeypatch.setenv("NO_PROXY", "other.example, .internal")
            transport = TrioTransport()
            assert (await send(transport, "GET", url)).json()["target"] == "/"
            await transport.aclose()
            monkeypatch.delenv("NO_PROXY")
            transport = TrioTransport(trust_env=False)
            assert (await send(transport, "GET", url)).json()["target"] == "/"
            await transport.aclose()
            async with trioclient.Client(
                api_key="sk-test",
                base_url=f"http://vllm.internal:{server.port}/v1",
                trust_env=False,
            ) as client:
                with pytest.raises(trioclient.APIError):
                    # echo's answer is no chat completion; what matters is who got it
                    await client.chat.completions.create(model="m", messages=MESSAGES)
            # With everything else off, the proxy is really used, for loopback too.
            transport = TrioTransport()
            await send(transport, "GET", url)
            await send(transport, "GET", server.url())
            await transport.aclose()
    assert [target for _, target, _ in proxy.seen] == [url.encode(), server.url().encode()]
    assert loopback_names.asked == ["vllm.internal"] * 3


# --- plain http to a self-hosted server ------------------------------------------------------


async def test_plain_http_to_a_self_hosted_name_works_without_a_flag(
    loopback_names: LoopbackNames,
) -> None:
    with trio.fail_after(LIMIT):
        async with open_server(answer_completions) as server:
            async with trioclient.Client(
                api_key="sk-test", base_url=f"http://vllm.internal:{server.port}/v1"
            ) as client:
                answer = await client.chat.completions.create(model="m", messages=MESSAGES)
    assert answer.content == "hello"
    assert loopback_names.asked == ["vllm.internal"]


def test_plain_http_to_a_provider_host_requires_https() -> None:
    with pytest.raises(ValueError, match=re.escape("https://api.x.ai/v1")):
        trioclient.Client(api_key="sk-test", base_url="http://api.x.ai/v1")


# --- the routing rules ------------------------------------------------------------------------


def route(environ: Mapping[str, str], url: str) -> str | None:
    routes = resolve_proxy_routes(None, environ=environ)
    if routes is None:
        return None
    parsed = httpx.URL(url)
    port = parsed.port or {"http": 80, "https": 443}[parsed.scheme]
    proxy = routes.proxy_for(parsed.scheme, parsed.host, port)
    return None if proxy is None else f"{proxy.host}:{proxy.port}"


@pytest.mark.parametrize(
    ("environ", "url", "expected"),
    [
        ({}, "http://a.example/", None),
        ({"HTTP_PROXY": "p:1"}, "http://a.example/", "p:1"),
        ({"HTTP_PROXY": "p:1"}, "https://a.example/", None),
        ({"HTTPS_PROXY": "http://p"}, "https://a.example/", "p:80"),
        ({"ALL_PROXY": "p:3", "HTTPS_PROXY": "q:4"}, "https://a.example/", "q:4"),
        ({"ALL_PROXY": "p:3", "HTTPS_PROXY": "q:4"}, "http://a.example/", "p:3"),
        ({"HTTP_PROXY": "p:1", "http_proxy": "q:2"}, "http://a.example/", "q:2"),
        ({"HTTP_PROXY": "p:1", "http_proxy": ""}, "http://a.example/", None),
        ({"HTTP_PROXY": "p:1", "http_proxy": "q:2", "REQUEST_METHOD": "GET"}, "http://a/", "q:2"),
        ({"HTTP_PROXY": "p:1", "REQUEST_METHOD": "GET"}, "http://a.example/", None),
        # Loopback is proxied like any host (as httpx) unless NO_PROXY lists it:
        ({"HTTP_PROXY": "p:1"}, "http://localhost:8000/", "p:1"),
        ({"HTTP_PROXY": "p:1"}, "http://127.8.0.1/", "p:1"),
        ({"HTTP_PROXY": "p:1", "NO_PROXY": "localhost"}, "http://localhost:8000/", None),
        ({"HTTP_PROXY": "p:1", "NO_PROXY": "127.0.0.1,::1"}, "http://[::1]:80/", None),
        ({"HTTP_PROXY": "p:1", "NO_PROXY": "127.0.0.1,::1"}, "http://127.0.0.1/", None),
        ({"HTTP_PROXY": "p:1", "NO_PROXY": "*"}, "http://a.example/", None),
        ({"HTTP_PROXY": "p:1", "NO_PROXY": "a.example"}, "http://a.example/", None),
        ({"HTTP_PROXY": "p:1", "NO_PROXY": "a.example"}, "http://x.a.example/", None),
        ({"HTTP_PROXY": "p:1", "NO_PROXY": "a.example"}, "http://ba.example/", "p:1"),
        ({"HTTP_PROXY": "p:1", "NO_PROXY": ".a.example"}, "http://a.example/", "p:1"),
        ({"HTTP_PROXY": "p:1", "NO_PROXY": "*.a.example"}, "http://x.a.example/", None),
        ({"HTTP_PROXY": "p:1", "no_proxy": "A.Example:8080"}, "http://a.example:8080/", None),
        ({"HTTP_PROXY": "p:1", "NO_PROXY": "a.example:8080"}, "http://a.example/", "p:1"),
        ({"HTTP_PROXY": "p:1", "NO_PROXY": "10.0.0.0/8"}, "http://10.1.2.3/", None),
        ({"HTTP_PROXY": "p:1", "NO_PROXY": "10.0.0.0/8"}, "http://11.1.2.3/", "p:1"),
        ({"HTTP_PROXY": "p:1", "NO_PROXY": "10.1.2.3"}, "http://10.1.2.3:9/", None),
        ({"HTTP_PROXY": "p:1", "NO_PROXY": "fd00::/8"}, "http://[fd00::1]/", None),
        ({"HTTP_PROXY": "p:1", "NO_PROXY": " b.example  a.example "}, "http://a.example/", None),
        ({"HTTP_PROXY": "p:1", "NO_PROXY": "a.example."}, "http://x.a.example./", None),
        ({"HTTP_PROXY": "p:1", "NO_PROXY": "[::1]:8080,10.1.2.3:80"}, "http://10.1.2.3:80/", None),
    ],
)
def test_proxy_routing_rules(environ: dict[str, str], url: str, expected: str | None) -> None:
    assert route(environ, url) == expected


def test_proxy_given_replaces_the_environment_and_goes_everywhere() -> None:
    environ = {"HTTP_PROXY": "p:1", "NO_PROXY": "*"}
    routes = resolve_proxy_routes("http://given:3128", environ=environ)
    assert routes is not None
    for scheme, host in [("http", "a.example"), ("https", "a.example"), ("http", "127.0.0.1")]:
        proxy = routes.proxy_for(scheme, host, 80)
        assert proxy is not None and (proxy.host, proxy.port) == ("given", 3128)
    assert resolve_proxy_routes(None, trust_env=False) is None


@pytest.mark.parametrize(
    ("proxy", "environ", "match"),
    [
        ("socks5://u:hunter2@p:1080", {}, "http:// proxies only"),
        ("https://p:443", {}, "http:// proxies only"),
        ("http://", {}, "no proxy host"),
        (None, {"ALL_PROXY": "socks5h://u:hunter2@p"}, "ALL_PROXY"),
    ],
)
def test_unusable_proxy_urls_are_clear_errors(
    proxy: str | None, environ: dict[str, str], match: str
) -> None:
    with pytest.raises(ValueError, match=match) as info:
        resolve_proxy_routes(proxy, environ=environ)
    assert "hunter2" not in str(info.value)


def test_client_checks_its_proxy_options_up_front(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="http:// proxies only"):
        trioclient.Client(api_key="sk-test", proxy="socks5://p:1080")
    monkeypatch.setenv("HTTPS_PROXY", "socks5://p:1080")
    with pytest.raises(ValueError, match="HTTPS_PROXY"):
        trioclient.Client(api_key="sk-test")
    trioclient.Client(api_key="sk-test", trust_env=False)
    # A caller's own client handles proxies itself (httpx[socks] may be installed).
    trioclient.Client(api_key="sk-test", http_client=httpx.AsyncClient(trust_env=False))
    with pytest.raises(ValueError, match="proxy="):
        trioclient.Client(
            api_key="sk-test", proxy="http://p:1", transport=httpx.MockTransport(print)
        )
    with pytest.raises(ValueError, match="keepalive_expiry"):
        trioclient.Client(api_key="sk-test", keepalive_expiry=-1, trust_env=False)
