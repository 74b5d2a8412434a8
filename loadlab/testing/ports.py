"""Loopback ports for tests: one that refuses (TCP) or stays silent (UDP), one free for both."""

from __future__ import annotations

import socket

FREE_PORT_TRIES = 50
"""A UDP port the kernel picks is seldom taken for TCP: a few tries always find one."""


def _released_port(kind: socket.SocketKind, host: str) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def closed_tcp_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on (bound, then released): a connect to it is refused."""
    return _released_port(socket.SOCK_STREAM, host)


def closed_udp_port(host: str = "127.0.0.1") -> int:
    """A UDP port nothing is bound to: a datagram sent there draws ICMP port unreachable."""
    return _released_port(socket.SOCK_DGRAM, host)


def free_port(host: str = "127.0.0.1") -> int:
    """A port free for both UDP and TCP right now (a DNS server listens on both)."""
    for _ in range(FREE_PORT_TRIES):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((host, 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((host, port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free UDP+TCP port on loopback")
