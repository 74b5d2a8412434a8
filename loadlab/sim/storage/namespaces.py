"""Namespace lifecycle: Terminating on delete, content purged after a delay, creates refused.

What is faithful: a DELETE of a namespace sets ``metadata.deletionTimestamp`` and
``status.phase: Terminating`` and answers 200 with it (registry/core/namespace/storage); a
second DELETE changes nothing; the namespaces the apiserver keeps alive are refused with 403
(plugin/pkg/admission/namespace/lifecycle: "this namespace may not be deleted"); a create in a
terminating namespace is 403 with a ``NamespaceTerminating`` cause and one in a missing namespace
is 404 ``namespaces "x" not found`` (the same admission plugin). The namespace controller's work,
deleting every namespaced object (each a watch DELETED event) and then the namespace, runs after
``api.namespace_finalize_s`` (``loadlab.sim.apiserver.reaper``).
Simplifications, on purpose: no ``NamespaceDeletionContentFailure``-style status conditions, no
``/finalize`` update (the namespace goes straight from Terminating to DELETED), and the purge
ignores the objects' own finalizers and grace periods.
"""

from __future__ import annotations

from loadlab.sim.k8s.objects import JsonObj, ResourceType, now_timestamp

# plugin/pkg/admission/namespace/lifecycle/admission.go: immortalNamespaces.
IMMORTAL_NAMESPACES = frozenset({"default", "kube-system", "kube-public"})
TERMINATING = "Terminating"
Refusal = tuple[int, str, JsonObj]


def is_terminating(namespace: JsonObj) -> bool:
    return bool((namespace.get("status") or {}).get("phase") == TERMINATING)


def terminating(namespace: JsonObj) -> JsonObj:
    """``namespace`` as the first DELETE leaves it: deletionTimestamp set, phase Terminating."""
    new = dict(namespace)
    new["metadata"] = {**namespace["metadata"], "deletionTimestamp": now_timestamp()}
    new["status"] = {**(namespace.get("status") or {}), "phase": TERMINATING}
    return new


def refuse_delete(name: str) -> tuple[str, JsonObj] | None:
    """(message, details) of the 403 for a namespace that may not be deleted, else None."""
    if name not in IMMORTAL_NAMESPACES:
        return None
    return (
        f'namespaces "{name}" is forbidden: this namespace may not be deleted',
        {"name": name, "kind": "namespaces"},
    )


def refuse_create(
    rtype: ResourceType, namespace: str, name: str, space: JsonObj | None
) -> Refusal | None:
    """(code, message, details) when NamespaceLifecycle refuses a create in ``namespace``
    (``space`` is the namespace object, None when there is none), else None."""
    if space is None:
        details: JsonObj = {"name": namespace, "kind": "namespaces"}
        return 404, f'namespaces "{namespace}" not found', details
    if not is_terminating(space):
        return None
    # apimachinery NewForbidden: '<resource>[.<group>] "<name>" is forbidden: <why>'.
    why = f"unable to create new content in namespace {namespace} because it is being terminated"
    details = {"name": name, "group": rtype.group, "kind": rtype.plural}
    details = {k: v for k, v in details.items() if v}
    details["causes"] = [
        {
            "reason": "NamespaceTerminating",
            "message": f"namespace {namespace} is being terminated",
            "field": "metadata.namespace",
        }
    ]
    return 403, f'{rtype.group_resource} "{name}" is forbidden: {why}', details
