"""Who is asking: bearer tokens as kube-apiserver's static token file knows them, or, when the sim
runs without tokens, the bearer token taken as the user name itself.

With tokens (``BearerTokens``), every request but the health paths must carry a known token or is
refused 401 with kube-apiserver's Status body. The health paths stay open to a request without a
token (anonymous), as the default system:public-info-viewer role leaves them to anyone; a request
with an unknown token is refused even there, as kube-apiserver does ("don't consider a bad bearer
token ... anonymous", pkg/kubeapiserver/authenticator/config.go).

Without tokens the sim trusts the bearer token as the identity (``Bearer system:node:node-3`` is
node-3), so a load test can speak for ten thousand nodes without issuing ten thousand credentials.

Simplification, on purpose: there is no authorization. Any authenticated user may do anything,
impersonation included (kube-apiserver would ask RBAC whether it may impersonate).
"""

from __future__ import annotations

import csv
import io
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from aiohttp import web

from loadlab.sim.apiserver.verbs import json_response, status_response
from loadlab.sim.k8s.objects import COREDNS_SERVICE_ACCOUNT
from loadlab.sim.storage.watch import encode_json

OPEN_PATHS = frozenset({"/healthz", "/livez", "/readyz", "/version"})
"""Paths anyone may read (system:public-info-viewer), and their sub-checks (``/readyz/etcd``)."""
SELF_SUBJECT_REVIEW_PATH = "/apis/authentication.k8s.io/v1/selfsubjectreviews"
"""``kubectl auth whoami`` posts here; the answer is the identity the sim gave the request."""

ADMIN_USER = "loadlab-admin"
TELEMETRY_USER = "system:serviceaccount:monitoring:telemetry"
NODE_GROUP = "system:nodes"
AUTHENTICATED = "system:authenticated"
# Not from a reference: 32 random bytes (256 bits, 43 base64url characters) put a token beyond
# guessing; kube-apiserver's static token file takes any string.
TOKEN_BYTES = 32


@dataclass(frozen=True)
class Identity:
    """A user as the authenticator hands it to the rest of the server."""

    user: str
    uid: str
    groups: tuple[str, ...]
    """As listed for the token; ``system:authenticated`` is added on the way in, as upstream."""


def is_open_path(path: str) -> bool:
    """Whether ``path`` is a health path anyone may read without a token."""
    path = path.rstrip("/") or "/"
    return path in OPEN_PATHS or path.startswith(("/healthz/", "/livez/", "/readyz/"))


def node_user(index: int) -> str:
    """The identity of simulated node ``node-<index>`` (the Node authorizer's naming)."""
    return f"system:node:node-{index}"


def _service_account(user: str) -> Identity:
    namespace = user.split(":")[2]
    groups = ("system:serviceaccounts", f"system:serviceaccounts:{namespace}")
    return Identity(user, user, groups)


def sim_identities(nodes: int) -> tuple[Identity, ...]:
    """Everyone a secured sim issues a token to: the admin, each seeded node, the telemetry
    service account the generator's telemetry agents use, and the sim's own CoreDNS."""
    return (
        Identity(ADMIN_USER, ADMIN_USER, ("system:masters",)),
        *(Identity(node_user(i), node_user(i), (NODE_GROUP,)) for i in range(nodes)),
        _service_account(TELEMETRY_USER),
        _service_account(COREDNS_SERVICE_ACCOUNT),
    )


class BearerTokens:
    """The token table of a secured sim (what ``--token-auth-file`` gives kube-apiserver)."""

    def __init__(self, by_token: Mapping[str, Identity]) -> None:
        self._by_token = dict(by_token)
        self._by_user = {identity.user: token for token, identity in self._by_token.items()}

    @classmethod
    def issue(cls, identities: Iterable[Identity]) -> BearerTokens:
        """A fresh random token for each identity."""
        return cls({secrets.token_urlsafe(TOKEN_BYTES): identity for identity in identities})

    def authenticate(self, token: str) -> Identity | None:
        """The identity ``token`` stands for, or None (a 401)."""
        identity = self._by_token.get(token)
        if identity is None:
            return None
        return Identity(identity.user, identity.uid, (*identity.groups, AUTHENTICATED))

    def token_of(self, user: str) -> str:
        """The token issued to ``user`` (KeyError if none was)."""
        return self._by_user[user]

    def to_token_file(self) -> str:
        """kube-apiserver's static token file: ``token,user,uid,"group1,group2"``, one a line."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        for token, identity in self._by_token.items():
            writer.writerow([token, identity.user, identity.uid, ",".join(identity.groups)])
        return out.getvalue()


def bearer_token(request: web.BaseRequest) -> str:
    """The token of ``Authorization: Bearer <token>``, or "" when there is none."""
    auth = request.headers.get("Authorization", "")
    return auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else ""


ANONYMOUS = Identity("system:anonymous", "", ("system:unauthenticated",))


def _trusted_identity(token: str) -> Identity:
    """Without tokens: the token is the user name (the sim's convention for load tests)."""
    if not token:
        return ANONYMOUS
    groups = [AUTHENTICATED]
    if token.startswith("system:node:"):
        groups.append(NODE_GROUP)
    return Identity(token, token, tuple(groups))


def identity_of(request: web.BaseRequest, tokens: BearerTokens | None) -> Identity | None:
    """Who ``request`` comes from, after impersonation; None if ``tokens`` refuse it (401)."""
    token = bearer_token(request)
    if tokens is None:
        identity = _trusted_identity(token)
    elif token:
        found = tokens.authenticate(token)
        if found is None:
            return None
        identity = found
    elif is_open_path(request.path):
        identity = ANONYMOUS
    else:
        return None
    impersonated = request.headers.get("Impersonate-User")
    groups = request.headers.getall("Impersonate-Group", [])
    if impersonated:
        return Identity(impersonated, "", (AUTHENTICATED, *groups))
    if groups:
        return Identity(identity.user, identity.uid, (*identity.groups, *groups))
    return identity


def unauthorized() -> web.Response:
    """kube-apiserver's answer to a missing or unknown token."""
    return status_response(401, "Unauthorized", "Unauthorized")


def self_subject_review(identity: Identity) -> web.Response:
    """The answer to a SelfSubjectReview (``kubectl auth whoami``): whom the server sees."""
    user_info: dict[str, object] = {"username": identity.user, "groups": list(identity.groups)}
    if identity.uid:
        user_info["uid"] = identity.uid
    body = {
        "kind": "SelfSubjectReview",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"creationTimestamp": None},
        "status": {"userInfo": user_info},
    }
    return json_response(encode_json(body), status=201)
