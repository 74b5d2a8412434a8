"""The wire: HTTP (aiohttp) and DNS (UDP with TCP fallback) targets behind one small protocol
(``base.Target``), the agents' HTTP client, the loopback rule and allowlists for addresses, and
access to real clusters (kubeconfig, TLS, credentials: ``cluster``, ``credentials``).

Imports nothing else of loadlab but the shared ``clock``, ``errors`` and ``runloop``, and
``agents.base`` (the data an agent's transport carries).
"""
