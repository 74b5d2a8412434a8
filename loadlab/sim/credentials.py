"""How a client reaches a secured sim, and the files that tell it: a kubeconfig for the admin and
kube-apiserver's static token file for everyone (``loadlab run --tokens-file`` gives each
simulated node its own token from it).

Both files hold secrets, so both are written 0600, and atomically (a temporary file in the same
folder, then a rename): a client polling for the kubeconfig never reads half of one.
"""

from __future__ import annotations

import base64
import contextlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from loadlab.errors import UsageError

CONTEXT = "loadlab-sim"
"""The kubeconfig's cluster and context name."""


@dataclass(frozen=True)
class ApiAccess:
    """What the sim's API asks of clients, from ``--tls``, ``--tokens`` and the ``-out`` flags."""

    tls: bool = False
    """Serve HTTPS with a CA made at start (``loadlab.sim.tls``)."""
    tokens: bool = False
    """Refuse requests without a known bearer token (401). Always on with ``tls``."""
    tokens_out: Path | None = None
    """Where to write the static token file (needs tokens)."""
    kubeconfig_out: Path | None = None
    """Where to write the admin's kubeconfig (needs TLS)."""

    @property
    def needs_tokens(self) -> bool:
        return self.tokens or self.tls

    def check(self) -> None:
        """``UsageError`` for a combination that cannot work."""
        if self.kubeconfig_out is not None and not self.tls:
            raise UsageError(
                "--kubeconfig-out needs --tls: the kubeconfig names the CA the sim makes for HTTPS"
            )
        if self.tokens_out is not None and not self.needs_tokens:
            raise UsageError("--tokens-out needs --tokens (or --tls): without them there are none")


def kubeconfig(server_url: str, ca_pem: bytes, user: str, token: str) -> dict[str, Any]:
    """A kubeconfig with one cluster, one user and one context, all current."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": CONTEXT,
                "cluster": {
                    "server": server_url,
                    "certificate-authority-data": base64.b64encode(ca_pem).decode(),
                },
            }
        ],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": CONTEXT, "context": {"cluster": CONTEXT, "user": user}}],
        "current-context": CONTEXT,
        "preferences": {},
    }


def write_private(path: Path, text: str, *, what: str) -> Path:
    """Write ``text`` to ``path`` (mode 0600) atomically; the absolute path written.

    ``UsageError`` naming ``what`` and the reason if the folder cannot take it.
    """
    path = path.expanduser().absolute()
    try:
        fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # mode 0600
    except OSError as exc:
        raise UsageError(f"cannot write the {what} to {path}: {exc.strerror}") from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(temp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise UsageError(f"cannot write the {what} to {path}: {exc.strerror}") from exc
    return path


def write_kubeconfig(path: Path, server_url: str, ca_pem: bytes, user: str, token: str) -> Path:
    """``kubeconfig(...)`` as YAML at ``path`` (0600, atomic)."""
    text = yaml.safe_dump(kubeconfig(server_url, ca_pem, user, token), sort_keys=False)
    return write_private(path, text, what="kubeconfig")
