"""The cluster DNS: the UDP/TCP nameserver, its record table, and the informer that feeds it.

May import ``loadlab.clock``, ``loadlab.sim.k8s`` and ``loadlab.sim.promtext``; it learns objects
over the API's HTTP, like CoreDNS, so never imports ``loadlab.sim.storage`` or
``loadlab.sim.apiserver``.
"""
