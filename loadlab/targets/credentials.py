"""Who a request says it is: the ``Authorization`` header for each agent identity.

Three kinds, one question (``authorization(user)``, asked on the hot path, so a dict lookup or an
attribute read, never I/O):

- ``SimIdentity``: the embedded sim's convention without tokens, ``Bearer <user name>`` (the sim
  takes the token as the identity, so every agent is its own APF flow).
- ``KubeconfigCredentials``: the kubeconfig's own identity for every request (one bearer token,
  or none when a client certificate in the TLS context authenticates). Tokens from an exec
  credential plugin expire; ``refresh`` runs the plugin again when expiry is near.
- ``TokenFile``: a token per user from a kube-apiserver static token file (``--tokens-file``), so
  each simulated node authenticates as itself; users not in it fall back to another kind.

A changed header bumps ``generation``: a target that renders its headers once, up front, compares
one int per request to know when to render them again.
"""

from __future__ import annotations

import csv
import datetime
import io
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

from loadlab.errors import UsageError

REFRESH_MARGIN = datetime.timedelta(seconds=60)
"""Renew a token this long before it expires: a request signed just before expiry still reaches
the server in time, and a periodic refresh every few seconds cannot miss the window. client-go
renews exec credentials on expiry or after a 401; loadlab cannot afford the 401s (each would be
counted as the server's error), so it renews ahead."""

Renewal = Callable[[], Awaitable[tuple[str | None, datetime.datetime | None]]]
"""Runs the credential plugin again: the new ``Authorization`` value and when it expires."""


class Credentials:
    """The ``Authorization`` header for each identity; the base has none for anyone."""

    def __init__(self) -> None:
        self.generation = 0
        """Bumped whenever a header value changes (a refresh): pre-rendered headers are stale."""

    def authorization(self, user: str | None) -> str | None:
        """The header value for a request made as ``user`` (None: the kubeconfig's own identity);
        None for no header."""
        return None

    async def refresh(self, now: datetime.datetime | None = None) -> bool:
        """Renew what is about to expire (``now`` defaults to the wall clock); True when a header
        changed. Nothing expires here."""
        return False


class SimIdentity(Credentials):
    """``Bearer <user>``: the embedded sim without tokens takes the token as the user name."""

    def authorization(self, user: str | None) -> str | None:
        return None if user is None else f"Bearer {user}"


class KubeconfigCredentials(Credentials):
    """One identity for everyone: the kubeconfig's token (or none beside a client certificate)."""

    def __init__(
        self,
        header: str | None,
        *,
        expires_at: datetime.datetime | None = None,
        renew: Renewal | None = None,
    ) -> None:
        super().__init__()
        self._header = header
        self.expires_at = expires_at
        """When the token stops working (an exec plugin's ``expirationTimestamp``), else None."""
        self._renew = renew

    def authorization(self, user: str | None) -> str | None:
        return self._header

    async def refresh(self, now: datetime.datetime | None = None) -> bool:
        if self._renew is None or self.expires_at is None:
            return False
        now = now if now is not None else datetime.datetime.now(datetime.UTC)
        if now < self.expires_at - REFRESH_MARGIN:
            return False
        header, self.expires_at = await self._renew()
        if header == self._header:
            return False
        self._header = header
        self.generation += 1
        return True


class TokenFile(Credentials):
    """A token per user (``read_token_file``); anyone else is asked of ``fallback``."""

    def __init__(self, tokens: Mapping[str, str], fallback: Credentials) -> None:
        super().__init__()
        self._headers = {user: f"Bearer {token}" for user, token in tokens.items()}
        self._fallback = fallback

    def authorization(self, user: str | None) -> str | None:
        header = self._headers.get(user) if user is not None else None
        return header if header is not None else self._fallback.authorization(user)

    async def refresh(self, now: datetime.datetime | None = None) -> bool:
        changed = await self._fallback.refresh(now)
        if changed:
            self.generation += 1
        return changed


def read_token_file(path: Path) -> dict[str, str]:
    """User -> token from a kube-apiserver static token file (``--token-auth-file``): CSV lines
    ``token,user,uid[,"group1,group2"]``. A user with several tokens keeps the first.

    Read as kube-apiserver reads it (apiserver ``authenticator/token/tokenfile``): blank lines
    skipped, at least three columns, no empty token; a bad line is one UsageError naming it.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise UsageError(f"--tokens-file {path}: cannot read it ({reason})") from None
    tokens: dict[str, str] = {}
    reader = csv.reader(io.StringIO(text), skipinitialspace=True, strict=True)
    try:
        for record in reader:
            line = reader.line_num
            if not record or not "".join(record).strip():
                continue
            if len(record) < 3:
                raise UsageError(
                    f"--tokens-file {path}, line {line}: expected token,user,uid[,groups] "
                    f"(kube-apiserver's static token format), found {len(record)} column(s)"
                )
            token, user = record[0].strip(), record[1].strip()
            if not token or not user:
                missing = "token" if not token else "user name"
                raise UsageError(f"--tokens-file {path}, line {line}: empty {missing}")
            tokens.setdefault(user, token)
    except csv.Error as exc:
        raise UsageError(f"--tokens-file {path}, line {reader.line_num}: {exc}") from None
    if not tokens:
        raise UsageError(f"--tokens-file {path}: no tokens in it")
    return tokens
