"""loadlab: find where a Kubernetes control plane saturates, and how it then fails.

Layers, arrows pointing down (a layer imports only those below it):
cli -> report -> analysis -> metrics;  cli -> engine -> targets;  agents (no I/O).
The embedded control plane (``loadlab.sim``) is a separate program and imports none of them.
"""

__version__ = "0.1.0"
