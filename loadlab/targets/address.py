"""Where load may go, and how loadlab reads the addresses it is given.

The rule: a target host is an IP literal in loopback (127.0.0.0/8 or ::1, IPv6 in brackets in a
URL) or literally ``localhost`` (any case, one optional trailing dot), which loadlab itself maps to
127.0.0.1. No name is ever handed to the system resolver: ``foo.localhost`` or an ``/etc/hosts``
entry could point anywhere, and a load test aimed at the wrong server knocks it over.

Beyond loopback, load goes only where the user named the target twice: ``--api URL`` with the same
URL in ``--allow-api``, ``--dns IP:PORT`` with the same address in ``--allow-dns``, and a
kubeconfig context in ``--allow-context`` (checked in ``loadlab.targets.cluster``).

Parses ``HOST[:PORT]`` (``--dns``: ``127.0.0.1:53``, ``[::1]:5353``, ``localhost``) and the API
base URL (``--api``: ``http[s]://HOST[:PORT][/path-prefix]``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

from loadlab.errors import UsageError

LOOPBACK_V4 = ipaddress.ip_network("127.0.0.0/8")
LOCALHOST_IP = "127.0.0.1"
"""What ``localhost`` means to loadlab, whatever /etc/hosts says (RFC 6761 s6.3 reserves the name
for loopback; 127.0.0.1 rather than ::1 because every target loadlab starts listens there)."""
RULE = (
    "loadlab aims only at loopback: an IP in 127.0.0.0/8, ::1, or the name localhost "
    "(which loadlab maps to 127.0.0.1 itself; no other name is looked up)"
)
SCHEME_PORTS = {"http": 80, "https": 443}
"""The default port of each scheme loadlab speaks (RFC 9110 4.2.1 and 4.2.2)."""


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


def parse_api_url(url: str, *, allow: Collection[str] = (), flag: str = "--api") -> ApiAddress:
    """Check an ``--api`` URL and say where to connect: UsageError for anything loadlab won't do.

    Allowed: ``http`` or ``https``, a loopback host (see the module rule), an optional port
    (default 80/443) and an optional path prefix (``http://127.0.0.1:6443/prefix``: operation
    paths are appended to it). Refused: credentials (``user:pw@``: use the profile's ``user``),
    a query string or fragment (the operations' paths carry their own), any other scheme.

    A host beyond loopback passes only when the URL is one of ``allow`` (``--allow-api``), compared
    after normalising both (scheme and name case, default port, IP spelling, trailing slash). Its
    ``connect_host`` is then the host itself: an IP literal, or a name aiohttp resolves when it
    connects (the user named that server twice, so the resolver's answer is theirs to vouch for).
    """
    scheme, host, port, path = _split_url(url, flag)
    connect = _loopback_ip(host)
    if connect is None:
        canonical = _canonical_url(scheme, host, port, path)
        allowed = {_canonical_url(*_split_url(a, "--allow-api")) for a in allow}
        if canonical not in allowed:
            raise UsageError(
                f"{flag} {url}: refusing to send load to {host}: {RULE}; "
                f"pass --allow-api {canonical} to aim load at it"
            )
        connect = _canonical_host(host)
    return _api_address(scheme, host, connect, port, path)


def parse_server_url(url: str, *, what: str) -> ApiAddress:
    """A kubeconfig's ``server``, checked as ``--api`` is but for its host, which may be anything:
    a kubeconfig target is vetted by its context's allowlist (``cluster.check_context_allowed``).
    ``localhost`` still maps to 127.0.0.1; ``what`` names the source in messages."""
    scheme, host, port, path = _split_url(url, what)
    return _api_address(scheme, host, _loopback_ip(host) or _canonical_host(host), port, path)


def _api_address(scheme: str, host: str, connect: str, port: int, path: str) -> ApiAddress:
    return ApiAddress(
        scheme=scheme,
        host=host,
        connect_host=connect,
        port=port,
        path=path,
        base_url=f"{scheme}://{format_host_port(connect, port)}{path}",
    )


def _split_url(url: str, flag: str) -> tuple[str, str, int, str]:
    """``(scheme, host as written, port, path prefix)`` of a base URL; errors name ``flag``."""
    text = url.strip()
    example = "expected a URL like http://127.0.0.1:6443"
    if any(ch <= " " or ch == "\x7f" for ch in text):
        # urlsplit silently drops tabs and newlines (WHATWG); a URL with any is a pasting accident.
        raise UsageError(f"{flag} {url!r}: contains a space or control character; {example}")
    try:
        parts = urlsplit(text)
    except ValueError:  # e.g. an unbalanced bracket in the host
        raise UsageError(f"{flag} {url}: not a URL; {example}") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEME_PORTS:
        if not (parts.scheme and "://" in text):  # 127.0.0.1:6443, localhost:6443
            raise UsageError(f"{flag} {url}: not a URL; {example}")
        raise UsageError(f"{flag} {url}: scheme '{parts.scheme}' is not supported; {example}")
    if "@" in parts.netloc:
        # The URL is not echoed: it holds a password.
        raise UsageError(
            f"{flag} {scheme}://...@{parts.netloc.rpartition('@')[2]}: credentials in the URL "
            "are not supported; give the identity as the profile's user field"
        )
    if "?" in text or "#" in text:
        raise UsageError(
            f"{flag} {url}: a query string or fragment is not allowed in the base URL; "
            "each operation's path in the profile carries its own"
        )
    if not parts.netloc:
        raise UsageError(f"{flag} {url}: no host; {example}")
    host, port_text = _split_netloc(parts.netloc, shown=url, expected="a URL like http://HOST:PORT")
    port = SCHEME_PORTS[scheme] if port_text is None else _port(port_text, url)
    return scheme, host, port, parts.path.rstrip("/")


def client_endpoint(base_url: str) -> tuple[str, int, SplitResult]:
    """(host, port, parts) of a base URL the command line already checked, as a client connects
    to it; ValueError when it is not one (a programming error, not a user's)."""
    parts = urlsplit(base_url)
    if parts.scheme not in SCHEME_PORTS or not parts.hostname:
        raise ValueError(f"base_url {base_url}: expected http://HOST[:PORT] or https://")
    return parts.hostname, parts.port or SCHEME_PORTS[parts.scheme], parts


def _canonical_host(host: str) -> str:
    """One spelling per host: an IP literal as ``ipaddress`` writes it, a name in lower case
    without its trailing dot."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host.lower().rstrip(".")


def _canonical_url(scheme: str, host: str, port: int, path: str) -> str:
    return f"{scheme}://{format_host_port(_canonical_host(host), port)}{path}"


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
"""DNS's well-known port (RFC 1035 4.2), for ``--dns`` and ``--allow-dns`` without one."""


def loopback_targets(
    api: str | None,
    dns: str | None,
    *,
    allow_api: Collection[str] = (),
    allow_dns: Collection[str] = (),
) -> tuple[str | None, str | None]:
    """``--api URL`` and ``--dns HOST:PORT`` as they are used: checked against the loopback rule
    and with ``localhost`` mapped to 127.0.0.1 here, never by the system resolver, so what is
    run (and written to the results) holds IP literals only. None stays None.

    Beyond loopback, an ``--api`` URL passes when it is one of ``allow_api`` (``--allow-api``;
    see ``parse_api_url``) and a ``--dns`` address when it is an IP literal and one of
    ``allow_dns`` (``--allow-dns``): a DNS server given by name would need DNS to find it.
    """
    api_url = parse_api_url(api, allow=allow_api).base_url if api is not None else None
    dns_addr = None
    if dns is not None:
        dns_addr = _dns_address(dns, allow_dns)
    return api_url, dns_addr


def _dns_address(dns: str, allow: Collection[str]) -> str:
    host, port = parse_host_port(dns, default_port=DNS_DEFAULT_PORT)
    ip = _loopback_ip(host)
    if ip is not None:
        return format_host_port(ip, port)
    try:
        address = str(ipaddress.ip_address(host))
    except ValueError:
        raise UsageError(
            f"--dns {dns}: refusing to send load to {host}: {RULE}; a DNS server beyond "
            "loopback is given as IP:PORT and allowed with --allow-dns IP:PORT"
        ) from None
    wanted = format_host_port(address, port)
    allowed = set()
    for entry in allow:
        allowed_host, allowed_port = parse_host_port(entry, default_port=DNS_DEFAULT_PORT)
        allowed.add(format_host_port(_canonical_host(allowed_host), allowed_port))
    if wanted not in allowed:
        raise UsageError(
            f"--dns {dns}: refusing to send load to {host}: {RULE}; "
            f"pass --allow-dns {wanted} to aim load at it"
        )
    return wanted
