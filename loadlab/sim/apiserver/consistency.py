"""Which state a read sees: how a GET, LIST or WATCH's resourceVersion options pick it, and the
waits and errors on the way, as kube-apiserver's watch cache and etcd3 store decide them.

- LIST (k8s.io/apiserver storage/cacher/cacher.go ``shouldDelegateList`` picks the path;
  storage/util.go ``ValidateListOptions`` the revision): rv "" or "0" read now; ``Exact``, and a
  legacy rv=N with a limit, read exactly at N (etcd); ``NotOlderThan``, and a legacy rv=N without
  a limit, read now once the store has reached N. A version the store has not reached yet: the
  watch cache waits up to 3 s for it, then 504 with Retry-After 1; etcd (a limit, or Exact) fails
  at once, without Retry-After.
- GET with rv=N: the watch cache, waiting the same way (``WaitUntilFreshAndGet``).
- WATCH with ``sendInitialEvents`` (the WatchList feature): the current state then a bookmark,
  after the same wait; its failure is an ERROR event inside the 200 stream (``newErrWatcher``).
  A plain watch from a future version is accepted and waits silently (the store skips changes up
  to it), as cache_watcher.go does.

In the sim the store is also the watch cache and never lags, so only a version from the future (a
previous run's, or made up) waits.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from loadlab.clock import NS_PER_S, Clock
from loadlab.sim.apiserver.routing import ListOptions
from loadlab.sim.k8s.validation import (
    FieldError,
    field_forbidden,
    field_not_supported,
    invalid,
    parse_go_bool,
)
from loadlab.sim.storage.errors import TooLargeResourceVersion
from loadlab.sim.storage.store import Store

# storage/cacher/watch_cache.go: blockTimeout and resourceVersionTooHighRetrySeconds.
BLOCK_TIMEOUT_S = 3.0
RETRY_AFTER_S = 1
# Not from a reference: how often a waiting read looks at the store's version again. The real
# cache is woken by a condition variable; 20 polls a second cost nothing for a rare wait.
POLL_INTERVAL_S = 0.05
NOT_OLDER_THAN = "NotOlderThan"
EXACT = "Exact"


@dataclass(frozen=True)
class ListVersion:
    """The state a LIST (without a continue token) asks for."""

    exact: int | None
    """Read exactly at this version (etcd; 410 once it has left the window)."""
    at_least: int | None
    """Read now, once the store has reached this version."""
    waits: bool
    """Whether a version not reached yet is waited for (the watch cache) or refused at once."""


def list_version(opts: ListOptions) -> ListVersion:
    """``opts``'s read, after ``routing.list_options`` has validated the combination."""
    rv, match = opts.resource_version, opts.resource_version_match
    if opts.continue_token or rv in ("", "0"):
        return ListVersion(None, None, waits=False)
    version = int(rv)
    if match == EXACT or (not match and opts.limit > 0):
        return ListVersion(version, None, waits=False)
    return ListVersion(None, version, waits=opts.limit <= 0)


def version_of(raw: str) -> int | None:
    """A numeric resourceVersion other than 0, or None ("" and "0" ask for no minimum)."""
    return int(raw) if raw not in ("", "0") else None


def refuse_too_large(store: Store, version: int) -> None:
    """etcd's answer to a version it has not reached: 504 at once, no Retry-After."""
    if version > store.resource_version:
        raise TooLargeResourceVersion(version, store.resource_version, retry_after_s=0)


async def wait_until_fresh(store: Store, clock: Clock, version: int) -> None:
    """Return once the store has reached ``version``; after ``BLOCK_TIMEOUT_S`` raise the watch
    cache's ``TooLargeResourceVersion`` (Retry-After 1)."""
    deadline_ns = clock.now_ns() + int(BLOCK_TIMEOUT_S * NS_PER_S)
    step_ns = int(POLL_INTERVAL_S * NS_PER_S)
    while store.resource_version < version:
        now_ns = clock.now_ns()
        if now_ns >= deadline_ns:
            raise TooLargeResourceVersion(version, store.resource_version, RETRY_AFTER_S)
        await clock.sleep_until(min(deadline_ns, now_ns + step_ns))


def send_initial_events(query: Mapping[str, str], opts: ListOptions) -> bool | None:
    """A watch's ``sendInitialEvents`` (None when absent), checked as apimachinery's
    internalversion validation validateWatchOptions checks it: 400 when it is not a bool, 422
    unless ``resourceVersionMatch=NotOlderThan`` goes with it."""
    raw = query.get("sendInitialEvents")
    if raw is None:
        return None
    value = parse_go_bool(raw, "sendInitialEvents: ")
    match = opts.resource_version_match
    errs: list[FieldError] = []
    if match != NOT_OLDER_THAN:
        errs.append(
            field_forbidden(
                "resourceVersionMatch",
                f"sendInitialEvents requires setting resourceVersionMatch to {NOT_OLDER_THAN}",
            )
        )
    if match and match != NOT_OLDER_THAN:
        errs.append(field_not_supported("resourceVersionMatch", match, [NOT_OLDER_THAN]))
    if errs:
        raise invalid("meta.k8s.io", "ListOptions", "", errs)
    return value
