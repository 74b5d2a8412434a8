"""Where load may go: loopback by default, anything else only when the user says so explicitly.

Also parses ``HOST:PORT`` strings (``127.0.0.1:53``, ``[::1]:5353``, ``localhost``).
"""

from __future__ import annotations

import ipaddress

from loadlab.errors import UsageError

LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost", "ip6-loopback"})


def is_loopback(host: str) -> bool:
    """True for loopback IP literals (127.0.0.0/8, ::1) and the usual loopback names."""
    host = host.strip("[]").lower()
    if host in LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def ensure_loopback_or_allowed(host: str, *, allow_remote: bool = False) -> None:
    """Refuse to aim load at anything but loopback unless ``allow_remote`` is set.

    Load tests knock servers over; sending one at a shared cluster by a typo must take a
    deliberate flag. Names other than localhost are refused too: they may resolve anywhere.
    """
    if allow_remote or is_loopback(host):
        return
    raise UsageError(
        f"refusing to send load to {host}: it is not a loopback address; "
        "loadlab aims only at loopback (the embedded control plane, kind, a port-forward); "
        "real clusters will need an allowlisted kubeconfig context"
    )


def parse_host_port(addr: str, *, default_port: int) -> tuple[str, int]:
    """Split ``HOST[:PORT]`` (IPv6 in brackets) into host and port; UsageError if malformed."""
    addr = addr.strip()
    host, port_text = addr, ""
    if addr.startswith("["):
        close = addr.find("]")
        if close < 0:
            raise UsageError(f"bad address {addr!r}: expected [IPv6]:PORT")
        host, rest = addr[1:close], addr[close + 1 :]
        if rest and not rest.startswith(":"):
            raise UsageError(f"bad address {addr!r}: expected [IPv6]:PORT")
        port_text = rest[1:]
    elif addr.count(":") == 1:
        host, port_text = addr.split(":")
    elif addr.count(":") > 1:
        host = addr  # a bare IPv6 literal
    if not host:
        raise UsageError(f"bad address {addr!r}: expected HOST:PORT")
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise UsageError(f"bad port in {addr!r}: expected a number from 1 to 65535")
    return host, int(port_text)
