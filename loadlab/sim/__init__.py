"""The embedded control plane: a simulated kube-apiserver (with APF and an overload model) and a
CoreDNS-like cluster DNS. A separate program that loadlab starts; it imports nothing from the
generator side (engine, targets, metrics, analysis, session, ...), only the shared
``loadlab.clock``, ``loadlab.errors`` and ``loadlab.runloop``.

Rooms, lower ones first: ``k8s`` (objects), ``storage`` (store, watch cache), ``overload`` (APF,
cost, memory), ``dns`` (cluster DNS and its informer), ``apiserver`` (the HTTP face); at the top,
the program around them (``config``, ``server``, ``cli``, ``process``, ``lifeline``, ``promtext``,
and for ``--tls`` / ``--tokens``: ``tls``, the CA and serving certificate made at start, and
``credentials``, the kubeconfig and token file written for clients).
"""
