"""The profile's ``abort:`` and ``limits:`` sections: when loadlab stops its own load, and how
much of it there may ever be.

The lesson of the incident this tool reproduces is that load aimed at a control plane can break
the very tools needed to stop it. So against a real cluster loadlab watches the target from the
side and unwinds its load first (exit 5), and caps what it can send at all.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from loadlab.profile_fields import MAX_LATENCY_MS, Count, Flag, Fraction, Number, Text, _Strict

CLUSTER_MAX_RATE_PER_S = 2000.0
"""Default cap of the total request rate against a real cluster. Not from a reference: a tenth of
what a single kube-apiserver of a large cluster serves, so a mistaken profile cannot be the
outage; raise it in the profile (``limits.max_rate_per_s``) knowing why."""
CLUSTER_MAX_CONNECTIONS = 5000
"""Default cap of open connections against a real cluster (a watch per simulated kubelet plus the
shared pool): 4,000 simulated nodes fit, with room."""


class AbortSection(_Strict):
    """When the load is stopped because the target shows distress."""

    enabled: Flag | None = None
    """None: on against a cluster named by a kubeconfig context or a non-loopback ``--api``, off
    against the embedded control plane and loopback servers (where saturating is the point)."""
    readyz: Flag = True
    """The canary's GET /readyz must answer 200."""
    canary_path: Text = Field(default="/api/v1/namespaces/default", pattern=r"^/")
    """One cheap read the canary times every second, over its own connection."""
    canary_max_ms: Annotated[Number, Field(gt=0, le=MAX_LATENCY_MS)] = 1000.0
    """sig-scalability's bound for a read of one object: a canary slower than that is a cluster
    already missing its SLO for everyone."""
    max_error_rate: Fraction = 0.5
    """The run's own API error rate (429s included) over ``sustain_s``."""
    max_429_share: Fraction = 0.5
    """The share of the run's API answers that are 429 over ``sustain_s``: APF shedding most of
    the load means the cluster's own clients are being shed too."""
    max_p99_ms: Annotated[Number, Field(gt=0, le=MAX_LATENCY_MS)] = 30_000.0
    """The run's own API p99 over ``sustain_s`` (the LIST SLO: nothing should take longer)."""
    sustain_s: Annotated[Number, Field(ge=1, le=60)] = 3.0
    """How long the run's own figures must breach before they stop it (the canary stops it at
    once: it measures the cluster, not the load)."""


class LimitsSection(_Strict):
    """Hard caps on what loadlab sends. None: no cap against loopback targets; against a real
    cluster the defaults above."""

    max_rate_per_s: Annotated[Number, Field(gt=0)] | None = None
    max_connections: Annotated[Count, Field(ge=1)] | None = None
