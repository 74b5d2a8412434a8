"""The sim's storage: the store (etcd and watch cache in one), collections, selectors, watchers.

May import ``loadlab.sim.k8s``; knows nothing of HTTP, APF or DNS.
"""
