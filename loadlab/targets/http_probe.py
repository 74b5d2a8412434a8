"""The pre-flight check of an API server: does it answer HTTP, with the right scheme, and does it
take the credentials? One line says what is wrong (exit 3) before a run counts a wall of errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Sequence

import aiohttp
from yarl import URL

from loadlab.errors import LoadlabError, TargetMisbehaving, TargetUnreachable
from loadlab.targets.cluster import ClusterAccess
from loadlab.targets.http_wire import DEFAULT_MAX_BODY_BYTES, discard_body

PLAIN_HTTP_CHECK_TIMEOUT_S = 1.0
"""How long the probe's plain-HTTP check after a stalled TLS handshake may take: one request to a
server that just accepted a connection, far more than a loopback or LAN round trip needs."""
GO_TLS_PORT_ANSWER = b"Client sent an HTTP request to an HTTPS server."
"""The body Go's net/http (so kube-apiserver) sends with a 400 to plain HTTP on its TLS port."""
PLAIN_HTTP_CHECK_READ_BYTES = 512
"""Enough for a status line, a few headers and Go's one-line 400 body, which come in one write."""
AUTH_CHECK_PATH = "/api"
"""Asked with credentials: kube-apiserver serves it to any authenticated user (the
system:discovery role), answers a bad token 401 and an anonymous request 403."""

Rejection = tuple[int, str, str | None]
"""``(status, reason, user)`` of an identity the server refused."""


async def probe_http(
    base_url: str,
    timeout_s: float,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    access: ClusterAccess | None = None,
    users: Sequence[str] = (),
) -> None:
    """One GET of ``base_url``: any HTTP status passes; no answer or a non-HTTP answer raises.

    The body is read up to ``max_body_bytes`` and dropped (a larger one still is an HTTP answer).
    A wrong scheme gets its own message: https:// against plain HTTP (a failed or stalled TLS
    handshake) and http:// against a Go TLS port (its 400 "HTTP request to an HTTPS server").

    With ``access`` (TLS from its context), one authenticated ``GET /api`` follows as the
    kubeconfig's own identity and as each of ``users`` (``--tokens-file``): a 401 or 403 is one
    line naming ``access.source`` (exit 3), before a run would count every request as a 4xx.
    """
    https = URL(base_url).scheme == "https"
    tls: ssl.SSLContext | bool = access.ssl if access and access.ssl is not None else True
    try:
        async with aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=timeout_s),
            cookie_jar=aiohttp.DummyCookieJar(),
            connector=aiohttp.TCPConnector(ssl=tls),
        ) as session:
            go_tls_port = await _reachable(session, base_url, https, max_body_bytes, access)
            rejected = None
            if access is not None and not go_tls_port:
                rejected = await _rejected(session, base_url, access, users, max_body_bytes)
    except TimeoutError:
        if https and await _speaks_plain_http(base_url):
            raise TargetMisbehaving(
                _not_tls(base_url, "no TLS handshake, but plain HTTP works")
            ) from None
        raise TargetUnreachable(
            f"{base_url} did not answer within {timeout_s:g} s: check --api and the server's load"
        ) from None
    except (aiohttp.ClientError, OSError) as exc:
        raise _wire_failure(exc, base_url, access) from None
    if go_tls_port:
        raise TargetMisbehaving(
            f"{base_url} is a TLS port (it answered 400 {GO_TLS_PORT_ANSWER.decode()!r}): "
            "is the scheme right? http vs https"
        )
    if rejected is not None and access is not None:
        status, reason, user = rejected
        whose = f"the credentials of {user}" if user is not None else "the credentials"
        raise TargetUnreachable(
            f"{access.source}: the API server rejected {whose} ({status} {reason})"
        )


async def _reachable(
    session: aiohttp.ClientSession,
    base_url: str,
    https: bool,
    max_body_bytes: int,
    access: ClusterAccess | None,
) -> bool:
    """GET ``base_url``; True when the answer is Go's 400 for plain HTTP on its TLS port.
    Sent as the kubeconfig's identity when there is one: an anonymous request would show in a
    real cluster's metrics and audit log as a failed authentication."""
    server_name, headers = None, {}
    if access is not None:
        server_name = access.tls_server_name
        authorization = access.credentials.authorization(None)
        if authorization is not None:
            headers["Authorization"] = authorization
    async with session.get(
        base_url, headers=headers, allow_redirects=False, server_hostname=server_name
    ) as resp:
        head = b""
        if resp.status == 400 and not https:
            with contextlib.suppress(asyncio.IncompleteReadError):
                head = await resp.content.readexactly(len(GO_TLS_PORT_ANSWER))
        if head == GO_TLS_PORT_ANSWER:
            resp.close()  # the scheme is wrong: the rest of the answer does not matter
            return True
        await discard_body(resp, max_body_bytes)
    return False


async def _rejected(
    session: aiohttp.ClientSession,
    base_url: str,
    access: ClusterAccess,
    users: Sequence[str],
    max_body_bytes: int,
) -> Rejection | None:
    """The first identity the server refuses (401/403), else None. An identity without a header
    is asked only of a kubeconfig target (a client certificate, or anonymous): the sim's
    convention without a user has nothing to check."""
    asked: set[str | None] = set()
    for user in (None, *users):
        authorization = access.credentials.authorization(user)
        if authorization in asked or (authorization is None and access.context is None):
            continue
        asked.add(authorization)
        headers = {"Accept": "application/json"}
        if authorization is not None:
            headers["Authorization"] = authorization
        async with session.get(
            base_url.rstrip("/") + AUTH_CHECK_PATH,
            headers=headers,
            allow_redirects=False,
            server_hostname=access.tls_server_name,
        ) as resp:
            await discard_body(resp, max_body_bytes)
            if resp.status in (401, 403):
                return resp.status, resp.reason or "", user
    return None


def _wire_failure(
    exc: aiohttp.ClientError | OSError, base_url: str, access: ClusterAccess | None
) -> LoadlabError:
    """The one line for a probe that failed on the wire (most specific aiohttp error first)."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        check = f"the CA in {access.source}" if access else "the CA and the host name in --api"
        return TargetMisbehaving(
            f"{base_url} speaks TLS, but its certificate was not accepted "
            f"({exc.certificate_error}): check {check}"
        )
    if isinstance(exc, aiohttp.ClientSSLError):
        reason = getattr(exc.os_error, "reason", None) or exc.os_error
        return TargetMisbehaving(_not_tls(base_url, f"TLS handshake failed: {reason}"))
    if isinstance(exc, aiohttp.ClientConnectorError):
        return TargetUnreachable(
            f"nothing answers at {base_url} ({exc.os_error.strerror or exc}): "
            "check --api and that the server is running"
        )
    if isinstance(exc, aiohttp.ClientResponseError | aiohttp.ServerDisconnectedError):
        return TargetMisbehaving(
            f"{base_url} answered, but not with HTTP ({type(exc).__name__}): "
            "check that --api names the API server's port and scheme (http or https)"
        )
    return TargetUnreachable(
        f"cannot reach {base_url} ({exc}): check --api and that the server is running"
    )


def _not_tls(base_url: str, what: str) -> str:
    return f"{base_url} does not speak TLS ({what}): is the scheme right? http vs https"


async def _speaks_plain_http(base_url: str) -> bool:
    """Whether ``base_url``'s host and port answer a plain-HTTP request with plain HTTP: asked
    only after a TLS handshake there stalled, to tell a wrong scheme from a slow server. A slow
    Go TLS server answers it too, but with its 400 for plain HTTP on a TLS port: that is no."""
    url = URL(base_url)
    if url.host is None or url.port is None:
        return False
    request = f"HEAD / HTTP/1.0\r\nHost: {url.host}\r\n\r\n".encode()
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(PLAIN_HTTP_CHECK_TIMEOUT_S):
            reader, writer = await asyncio.open_connection(url.host, url.port)
            writer.write(request)
            answer = await reader.read(PLAIN_HTTP_CHECK_READ_BYTES)
            return answer.startswith(b"HTTP/") and GO_TLS_PORT_ANSWER not in answer
    except (TimeoutError, OSError):
        return False
    finally:
        if writer is not None:
            writer.close()
