"""The wire: HTTP (aiohttp) and DNS (UDP with TCP fallback) targets behind one small protocol
(``base.Target``), and the loopback rule for addresses.

Imports nothing else of loadlab but the shared ``clock``, ``errors`` and ``runloop``.
"""
