"""The simulated kube-apiserver: the aiohttp app, routing, verbs, discovery, kubectl tables, and
who is asking (``authn``: bearer tokens, 401s, SelfSubjectReview).

May import ``loadlab.clock``, ``loadlab.errors``, ``loadlab.sim.config``, ``loadlab.sim.promtext``
and the sim's ``k8s``, ``storage`` and ``overload``; never ``loadlab.sim.dns``.
"""
