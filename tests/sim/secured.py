"""Helpers for tests of a secured sim (``--tls``, ``--tokens``): its files and plain HTTP(S) calls.

- ``Reply``, ``call(url, token=..., ca_pem=...)``: one request with urllib, any status returned.
- ``read_kubeconfig(path)``, ``ca_of(kubeconfig)``, ``read_token_file(path)``.
- ``request_totals(metrics_text)``: apiserver_request_total by (verb, resource, code).
- ``UNAUTHORIZED``: the 401 Status body; ``REVIEW`` to POST at ``REVIEW_PATH`` (who am I).
"""

from __future__ import annotations

import base64
import csv
import json
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.sim.test_promtext import parse

TIMEOUT_S = 30.0
UNAUTHORIZED = {
    "kind": "Status",
    "apiVersion": "v1",
    "metadata": {},
    "status": "Failure",
    "message": "Unauthorized",
    "reason": "Unauthorized",
    "code": 401,
}
"""kube-apiserver's body for a missing or unknown bearer token."""
REVIEW_PATH = "/apis/authentication.k8s.io/v1/selfsubjectreviews"
REVIEW = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
"""What ``kubectl auth whoami`` posts to ``REVIEW_PATH``: the answer names the caller."""


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def call(
    url: str,
    *,
    token: str | None = None,
    ca_pem: bytes | None = None,
    method: str = "GET",
    data: dict[str, Any] | None = None,
) -> Reply:
    """One request; an HTTP error status is returned, not raised. ``ca_pem`` is the only CA
    trusted for https (verification stays on)."""
    headers = {"Accept": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    body = None
    if data is not None:
        body = json.dumps(data).encode()
        headers["Content-Type"] = "application/json"
    context = ssl.create_default_context(cadata=ca_pem.decode()) if ca_pem is not None else None
    req = urllib.request.Request(url, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT_S, context=context) as resp:
            return Reply(resp.status, resp.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return Reply(exc.code, exc.read())


def read_kubeconfig(path: Path) -> dict[str, Any]:
    loaded = yaml.safe_load(path.read_text())
    assert isinstance(loaded, dict)
    return loaded


def ca_of(kubeconfig: dict[str, Any]) -> bytes:
    """The CA certificate (PEM) a kubeconfig's only cluster trusts."""
    (cluster,) = kubeconfig["clusters"]
    return base64.b64decode(cluster["cluster"]["certificate-authority-data"])


def read_token_file(path: Path) -> list[list[str]]:
    """The rows of a static token file, as kube-apiserver's CSV reader sees them."""
    with path.open(newline="") as f:
        return list(csv.reader(f))


def token_of(rows: list[list[str]], user: str) -> str:
    (token,) = [row[0] for row in rows if row[1] == user]
    return token


def request_totals(metrics_text: str) -> dict[tuple[str, str, str], float]:
    """apiserver_request_total by (verb, resource, code)."""
    totals: dict[tuple[str, str, str], float] = {}
    for labels, value in parse(metrics_text).get("apiserver_request_total", {}).items():
        by_name = dict(labels)
        key = (by_name["verb"], by_name["resource"], by_name["code"])
        totals[key] = totals.get(key, 0.0) + value  # summed over scope, subresource...
    return totals
