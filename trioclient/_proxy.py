"""Which proxy, if any, a request goes through: ``proxy=`` or the environment.

The rules are httpx's (and so the openai SDK's), written down here:

* ``proxy=`` (a URL) serves every request, plain http and https alike, and the
  environment is not read at all.
* Otherwise, unless ``trust_env=False``: an ``http://`` request goes through
  ``HTTP_PROXY``, an ``https://`` one through ``HTTPS_PROXY``, either falling back to
  ``ALL_PROXY``. Each name is also read in lower case, which wins when both are set,
  even when it is empty (so ``http_proxy=`` turns an inherited ``HTTP_PROXY`` off), as
  in Python's ``urllib``. Uppercase ``HTTP_PROXY`` is ignored when ``REQUEST_METHOD``
  is set: inside a CGI program it can be set by a request header ("httpoxy").
* ``NO_PROXY`` (comma-separated) lists hosts that go direct: ``*`` for all;
  ``example.com`` for that host and its subdomains; ``.example.com`` or
  ``*.example.com`` for subdomains only; ``host:port`` for one port; an IP address or a
  CIDR block (``10.0.0.0/8``) for IP hosts.
* Loopback hosts get no exception of their own (as in httpx, unlike Go): list them in
  ``NO_PROXY`` (``localhost,127.0.0.1,::1``), as most proxy setups already do.

A proxy URL is ``http://[user:password@]host[:port]`` (``host:port`` alone means
http; the port defaults to 80). Plain http requests are forwarded to it in absolute
form; https requests are tunnelled with ``CONNECT``, so the proxy never sees their
content. TLS *to* the proxy and SOCKS are not supported: pass your own
``httpx.AsyncClient`` for those.
"""

from __future__ import annotations

import base64
import ipaddress
import os
from collections.abc import Mapping

import attrs
import httpx

__all__ = ["ProxyRoutes", "ProxyURL", "resolve_proxy_routes"]

_IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@attrs.frozen
class ProxyURL:
    """Where a proxy listens, and the ``Proxy-Authorization`` value to send it."""

    host: str
    port: int
    authorization: bytes | None = attrs.field(default=None, repr=False)

    @classmethod
    def parse(cls, value: str | httpx.URL, *, source: str) -> ProxyURL:
        """A proxy from its URL; ``source`` names where it came from, for errors."""
        text = str(value).strip()
        if "://" not in text:
            text = "http://" + text
        try:
            url = httpx.URL(text)
        except httpx.InvalidURL as exc:
            raise ValueError(f"{source} is not a valid proxy URL: {exc}") from None
        if url.scheme != "http":
            raise ValueError(
                f"{source} uses {url.scheme}://, but trioclient's transport speaks to "
                "http:// proxies only (https targets are still encrypted end to end, "
                "through CONNECT); for another kind pass http_client=httpx.AsyncClient("
                "proxy=...)"
            )
        if not url.host:
            raise ValueError(f"{source} names no proxy host")
        authorization = None
        if url.username or url.password:
            credentials = f"{url.username}:{url.password}".encode()
            authorization = b"Basic " + base64.b64encode(credentials)
        return cls(host=url.host, port=url.port or 80, authorization=authorization)


@attrs.frozen
class _Bypass:
    """One ``NO_PROXY`` entry."""

    domain: str = ""  # lower case, no leading dot
    subdomains_only: bool = False
    port: int | None = None
    network: _IPNetwork | None = None

    @classmethod
    def parse(cls, entry: str) -> _Bypass | None:
        entry = entry.strip().lower()
        if not entry:
            return None
        try:
            return cls(network=ipaddress.ip_network(entry.strip("[]"), strict=False))
        except ValueError:
            pass
        port = None
        host, sep, port_text = entry.rpartition(":")
        if sep and port_text.isdigit() and "]" not in port_text:
            entry, port = host, int(port_text)
            try:
                return cls(network=ipaddress.ip_network(entry.strip("[]")), port=port)
            except ValueError:
                pass
        subdomains_only = entry.startswith((".", "*."))
        domain = entry.lstrip("*").lstrip(".").rstrip(".")
        return cls(domain=domain, subdomains_only=subdomains_only, port=port)

    def matches(self, host: str, port: int) -> bool:
        if self.port is not None and port != self.port:
            return False
        if self.network is not None:
            try:
                return ipaddress.ip_address(host) in self.network
            except ValueError:
                return False
        if host.endswith("." + self.domain):
            return True
        return host == self.domain and not self.subdomains_only


@attrs.frozen
class ProxyRoutes:
    """The proxy for each scheme and the hosts that go direct; see the module docstring."""

    http: ProxyURL | None
    https: ProxyURL | None
    bypass: tuple[_Bypass, ...] = ()

    def proxy_for(self, scheme: str, host: str, port: int) -> ProxyURL | None:
        """The proxy for a request to ``scheme://host:port``, or ``None`` to go direct."""
        proxy = self.https if scheme == "https" else self.http if scheme == "http" else None
        if proxy is None:
            return None
        host = host.lower().strip("[]").rstrip(".")
        if any(rule.matches(host, port) for rule in self.bypass):
            return None
        return proxy


def _env(environ: Mapping[str, str], name: str) -> tuple[str, str] | None:
    """``(variable, value)`` of a proxy variable, lower case first; ``None`` if unset
    or empty."""
    for variable in (name.lower(), name.upper()):
        if variable == "HTTP_PROXY" and "REQUEST_METHOD" in environ:
            continue
        if variable in environ:
            value = environ[variable].strip()
            return (variable, value) if value else None
    return None


def resolve_proxy_routes(
    proxy: str | httpx.URL | None,
    *,
    trust_env: bool = True,
    environ: Mapping[str, str] | None = None,
) -> ProxyRoutes | None:
    """The routes for ``proxy=`` or the environment; ``None`` when every request goes direct.

    Raises:
        ValueError: A proxy URL (given or from the environment, which it names) is not
            an ``http://`` proxy URL.
        TypeError: ``proxy`` is neither a string nor an ``httpx.URL``.
    """
    if proxy is not None:
        if not isinstance(proxy, str | httpx.URL):
            raise TypeError(
                f"proxy must be a URL string such as 'http://proxy:3128', got {type(proxy).__name__}"
            )
        # Not echoed in errors: a proxy URL may hold a password.
        given = ProxyURL.parse(proxy, source="the proxy= URL")
        return ProxyRoutes(http=given, https=given)
    if not isinstance(trust_env, bool):
        raise TypeError(f"trust_env must be True or False, got {trust_env!r}")
    if not trust_env:
        return None
    if environ is None:
        environ = os.environ
    found = {}
    for name in ("http_proxy", "https_proxy", "all_proxy"):
        got = _env(environ, name)
        if got is not None:
            variable, value = got
            # The variable, not its value, in errors: a proxy URL may hold a password.
            found[name] = ProxyURL.parse(value, source=f"the environment variable {variable}")
    fallback = found.get("all_proxy")
    http = found.get("http_proxy", fallback)
    https = found.get("https_proxy", fallback)
    if http is None and https is None:
        return None
    no_proxy = _env(environ, "no_proxy")
    bypass: list[_Bypass] = []
    if no_proxy is not None:
        entries = no_proxy[1].replace(" ", ",").split(",")
        if "*" in (entry.strip() for entry in entries):
            return None
        bypass = [rule for rule in map(_Bypass.parse, entries) if rule is not None]
    return ProxyRoutes(http=http, https=https, bypass=tuple(bypass))
