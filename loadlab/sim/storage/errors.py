"""What the store refuses, as the API server's Status errors: code, reason, message, details.

``store`` re-exports these, so callers keep importing them from ``loadlab.sim.storage.store``.
"""

from __future__ import annotations

from loadlab.sim.k8s.objects import JsonObj

# k8s.io/apiserver pkg/storage/errors.go: the cause NewTooLargeResourceVersionError attaches.
TOO_LARGE_CAUSE = "ResourceVersionTooLarge"


class StoreError(Exception):
    """A request the store refuses; the API server turns it into a Status object."""

    reason = "InternalError"
    code = 500

    def __init__(self, message: str, details: JsonObj | None = None) -> None:
        super().__init__(message)
        self.details = details
        """The Status ``details`` (name, kind, causes), as the real error carries them."""


class NotFound(StoreError):
    reason = "NotFound"
    code = 404


class AlreadyExists(StoreError):
    reason = "AlreadyExists"
    code = 409


class Conflict(StoreError):
    reason = "Conflict"
    code = 409


class Expired(StoreError):
    """The resourceVersion (or continue token) is older than the event log reaches: 410 Gone."""

    reason = "Expired"
    code = 410


class ContinueExpired(Expired):
    """A continue token older than the event log: 410 with a token that resumes the list at
    the latest version (etcd3 errors.go handleCompactedErrorForPaging puts it in the Status's
    ListMeta), for a client that accepts an inconsistent list."""

    def __init__(self, message: str, continue_token: str) -> None:
        super().__init__(message)
        self.continue_token = continue_token
        """The Status's ``metadata.continue``."""


class TooLargeResourceVersion(StoreError):
    """A resourceVersion newer than the store has: 504 Timeout (storage/errors.go
    NewTooLargeResourceVersionError, built on NewTimeoutError)."""

    reason = "Timeout"
    code = 504

    def __init__(self, requested: int, current: int, retry_after_s: int) -> None:
        details: JsonObj = {
            "causes": [{"reason": TOO_LARGE_CAUSE, "message": "Too large resource version"}]
        }
        if retry_after_s > 0:  # retryAfterSeconds is omitempty
            details["retryAfterSeconds"] = retry_after_s
        super().__init__(
            f"Timeout: Too large resource version: {requested}, current: {current}", details
        )
        self.retry_after_s = retry_after_s
        """Also the ``Retry-After`` header (responsewriters sets it from the Status)."""


class Invalid(StoreError):
    reason = "BadRequest"
    code = 400


class Forbidden(StoreError):
    reason = "Forbidden"
    code = 403
