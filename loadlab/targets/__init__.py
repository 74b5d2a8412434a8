"""The wire: HTTP (aiohttp) and DNS (UDP with TCP fallback) targets behind one small protocol.

Imports nothing else from loadlab except ``loadlab.errors``.
"""
