"""Where load may go, and how loadlab reads the addresses it is given.

The rule: a target host is an IP literal in loopback (127.0.0.0/8 or ::1, IPv6 in brackets in a
URL) or literally ``localhost`` (any case, one optional trailing dot), which loadlab itself maps to
127.0.0.1. No name is ever handed to the system resolver: ``foo.localhost`` or an ``/etc/hosts``
entry could point anywhere, and a load test aimed at the wrong server knocks it over.

Parses ``HOST[:PORT]`` (``--dns``: ``127.0.0.1:53``, ``[::1]:5353``, ``localhost``) and the API
base URL (``--api``: ``http[s]://HOST[:PORT][/path-prefix]``).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from loadlab.errors import UsageError

LOOPBACK_V4 = ipaddress.ip_network("127.0.0.0/8")
LOCALHOST_IP = "127.0.0.1"
"""What ``localhost`` means to loadlab, whatever /etc/hosts says (RFC 6761 s6.3 reserves the name
for loopback; 127.0.0.1 rather than ::1 because every target loadlab starts listens there)."""
RULE = (
    "loadlab aims only at loopback: an IP in 127.0.0.0/8, ::1, or the name localhost "
    "(which loadlab maps to 127.0.0.1 itself; no other name is looked up)"
)
_SCHEME_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class ApiAddress:
    """A checked ``--api`` URL."""

    scheme: str
    """``http`` or ``https``."""
    host: str
    """The host as written (``localhost``, ``::1``): for display, and as the TLS server name."""
    connect_host: str
    """The IP literal to connect to (``127.0.0.1`` for ``localhost``)."""
    port: int
    path: str
    """The path prefix, without a trailing slash ("" for none); operation paths are appended."""
    base_url: str
    """``scheme://connect_host:port/path``: what the HTTP target is given; nothing to resolve."""


def _loopback_ip(host: str) -> str | None:
    """The IP literal ``host`` stands for under the rule above, or None if it is outside it."""
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if host.lower() in ("localhost", "localhost."):
        return LOCALHOST_IP
    if "%" in host:  # a scoped IPv6 address (fe80::1%eth0) names an interface, not loopback
        return None
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if ip.version == 4 and ip in LOOPBACK_V4:
        return str(ip)
    if ip == ipaddress.IPv6Address("::1"):  # not ::ffff:127.0.0.1: kept to the documented rule
        return str(ip)
    return None


def is_loopback(host: str) -> bool:
    """True for loopback IP literals (127.0.0.0/8, ::1, bracketed or not) and ``localhost``."""
    return _loopback_ip(host) is not None


def resolve_loopback(host: str) -> str:
    """The IP literal to connect to for ``host`` (``localhost`` -> ``127.0.0.1``); UsageError
    for anything outside the rule. Never asks the system resolver."""
    ip = _loopback_ip(host)
    if ip is None:
        raise UsageError(f"refusing to send load to {host}: {RULE}")
    return ip


def parse_host_port(addr: str, *, default_port: int) -> tuple[str, int]:
    """Split ``HOST[:PORT]`` (IPv6 bare or in brackets) into host and port; UsageError if malformed.

    The host is returned as written (brackets removed); pass it to ``resolve_loopback`` for the IP
    to connect to. A colon with no port after it is an error, not the default port.
    """
    text = addr.strip()
    if text.count(":") > 1 and not text.startswith("["):
        host, port_text = text, None  # a bare IPv6 literal; its port needs brackets
    else:
        host, port_text = _split_netloc(text, shown=addr, expected="HOST:PORT")
    return host, default_port if port_text is None else _port(port_text, addr)


def format_host_port(host: str, port: int) -> str:
    """``HOST:PORT``, with an IPv6 host in brackets: the inverse of ``parse_host_port``."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_api_url(url: str) -> ApiAddress:
    """Check an ``--api`` URL and say where to connect: UsageError for anything loadlab won't do.

    Allowed: ``http`` or ``https``, a loopback host (see the module rule), an optional port
    (default 80/443) and an optional path prefix (``http://127.0.0.1:6443/prefix``: operation
    paths are appended to it). Refused: credentials (``user:pw@``: use the profile's ``user``),
    a query string or fragment (the operations' paths carry their own), any other scheme.
    """
    text = url.strip()
    example = "expected a URL like http://127.0.0.1:6443"
    if any(ch <= " " or ch == "\x7f" for ch in text):
        # urlsplit silently drops tabs and newlines (WHATWG); a URL with any is a pasting accident.
        raise UsageError(f"--api {url!r}: contains a space or control character; {example}")
    try:
        parts = urlsplit(text)
    except ValueError:  # e.g. an unbalanced bracket in the host
        raise UsageError(f"--api {url}: not a URL; {example}") from None
    scheme = parts.scheme.lower()
    if scheme not in _SCHEME_PORTS:
        if not (parts.scheme and "://" in text):  # 127.0.0.1:6443, localhost:6443
            raise UsageError(f"--api {url}: not a URL; {example}")
        raise UsageError(f"--api {url}: scheme '{parts.scheme}' is not supported; {example}")
    if "@" in parts.netloc:
        # The URL is not echoed: it holds a password.
        raise UsageError(
            f"--api {scheme}://...@{parts.netloc.rpartition('@')[2]}: credentials in the URL are "
            "not supported; give the identity as the profile's user field"
        )
    if "?" in text or "#" in text:
        raise UsageError(
            f"--api {url}: a query string or fragment is not allowed in the base URL; "
            "each operation's path in the profile carries its own"
        )
    if not parts.netloc:
        raise UsageError(f"--api {url}: no host; {example}")
    host, port_text = _split_netloc(parts.netloc, shown=url, expected="a URL like http://HOST:PORT")
    port = _SCHEME_PORTS[scheme] if port_text is None else _port(port_text, url)
    connect = _loopback_ip(host)
    if connect is None:
        raise UsageError(f"--api {url}: refusing to send load to {host}: {RULE}")
    path = parts.path.rstrip("/")
    return ApiAddress(
        scheme=scheme,
        host=host,
        connect_host=connect,
        port=port,
        path=path,
        base_url=f"{scheme}://{format_host_port(connect, port)}{path}",
    )


def _split_netloc(text: str, *, shown: str, expected: str) -> tuple[str, str | None]:
    """``host``, ``host:port``, ``[v6]`` or ``[v6]:port`` -> (host, port text or None)."""
    if text.startswith("["):
        close = text.find("]")
        rest = text[close + 1 :]
        if close < 0 or (rest and not rest.startswith(":")):
            raise UsageError(f"bad address {shown!r}: expected [IPv6]:PORT")
        host, port_text = text[1:close], (rest[1:] if rest else None)
    elif ":" in text:
        host, _, port_text_ = text.partition(":")
        if ":" in port_text_:
            raise UsageError(f"bad address {shown!r}: an IPv6 address needs brackets, [::1]:PORT")
        port_text = port_text_
    else:
        host, port_text = text, None
    if not host:
        raise UsageError(f"bad address {shown!r}: no host; expected {expected}")
    return host, port_text


def _port(text: str, shown: str) -> int:
    # isascii: str.isdigit() also accepts other scripts' digits; the length check keeps int()
    # from ever seeing a huge string.
    if not (text.isascii() and text.isdigit() and len(text) <= 5 and 0 < int(text) < 65536):
        got = f"'{text}'" if text else "nothing"
        raise UsageError(f"bad port in {shown!r}: expected a number from 1 to 65535, got {got}")
    return int(text)


DNS_DEFAULT_PORT = 53


def loopback_targets(api: str | None, dns: str | None) -> tuple[str | None, str | None]:
    """``--api URL`` and ``--dns HOST:PORT`` as they are used: checked against the loopback rule
    and with ``localhost`` mapped to 127.0.0.1 here, never by the system resolver, so what is
    run (and written to the results) holds IP literals only. None stays None."""
    api_url = parse_api_url(api).base_url if api is not None else None
    dns_addr = None
    if dns is not None:
        host, port = parse_host_port(dns, default_port=DNS_DEFAULT_PORT)
        dns_addr = format_host_port(resolve_loopback(host), port)
    return api_url, dns_addr
