"""Which default FlowSchema matched a request: the ``flow_schema`` label of the APF metrics.

The sim classifies straight to a priority level (``apf.classify``); dashboards group APF metrics
by schema too, so this names the Kubernetes 1.32 default schema that would have matched.
"""

from __future__ import annotations

from loadlab.sim.overload.cost import RequestAttributes

# The default FlowSchema that sends each kind of request to its level (k8s.io/apiserver
# pkg/apis/flowcontrol/bootstrap/default.go); levels whose schema depends on the user are below.
_SCHEMA_OF_LEVEL = {
    "exempt": "exempt",
    "node-high": "system-node-high",
    "system": "system-nodes",
    "leader-election": "system-leader-election",
    "workload-low": "service-accounts",
    "global-default": "global-default",
    "catch-all": "catch-all",
}
_SCHEMA_OF_USER = {
    "system:kube-controller-manager": "kube-controller-manager",
    "system:kube-scheduler": "kube-scheduler",
}


def flow_schema_of(attrs: RequestAttributes, level: str) -> str:
    """The default FlowSchema that matched a request classified to ``level`` (the metrics'
    ``flow_schema`` label; the sim classifies by level, this names the schema that did it)."""
    if level == "workload-high":
        user = attrs.user or "system:anonymous"
        return _SCHEMA_OF_USER.get(user, "kube-system-service-accounts")
    return _SCHEMA_OF_LEVEL.get(level, level)
