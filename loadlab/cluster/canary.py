"""The canary: the cluster watched from the side, once a second, over its own connection.

While the load runs, a separate client asks ``/readyz`` and times one cheap read, as an operator's
``kubectl get`` would. When either fails or is slower than its bound, the cluster is in distress
for everyone, whatever the run's own figures say, and the run is stopped at once. The canary's
requests are not part of the load and are not recorded with it.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import aiohttp

from loadlab.clock import NS_PER_S, Clock

CANARY_INTERVAL_S = 1.0
"""Issue 10's rail: the canary looks every second, so a breach stops the load within two."""


@dataclass(frozen=True)
class CanarySettings:
    server: str
    readyz: bool
    path: str
    max_ms: float
    ssl: ssl.SSLContext | None = None
    headers: Mapping[str, str] | None = None
    server_hostname: str | None = None
    """The name the server's certificate must carry, when not the URL's host."""


@dataclass
class Canary:
    settings: CanarySettings
    clock: Clock
    on_breach: Callable[[str], None]
    interval_s: float = CANARY_INTERVAL_S
    samples: int = 0
    breach: str | None = None

    async def run(self) -> None:
        """Look every second until cancelled or breached; ``on_breach(why)`` once."""
        s = self.settings
        connector = aiohttp.TCPConnector(limit=1, ssl=s.ssl if s.ssl is not None else False)
        async with aiohttp.ClientSession(
            connector=connector,
            headers=dict(s.headers or {}),
            cookie_jar=aiohttp.DummyCookieJar(),
        ) as http:
            next_ns = self.clock.now_ns()
            while self.breach is None:
                why = await self.look(http)
                self.samples += 1
                if why is not None:
                    self.breach = why
                    self.on_breach(why)
                    return
                next_ns += int(self.interval_s * NS_PER_S)
                await self.clock.sleep_until(next_ns)

    async def look(self, http: aiohttp.ClientSession) -> str | None:
        """One look: None when the cluster looks healthy, else why not."""
        s = self.settings
        if s.readyz:
            why = await self._get(http, "/readyz", "GET /readyz")
            if why is not None:
                return why
        return await self._get(http, s.path, f"canary GET {s.path}")

    async def _get(self, http: aiohttp.ClientSession, path: str, what: str) -> str | None:
        limit_ms = self.settings.max_ms
        started_ns = self.clock.now_ns()
        try:
            async with http.get(
                self.settings.server + path,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=limit_ms / 1000),
                server_hostname=self.settings.server_hostname,
            ) as resp:
                await resp.read()
                status = resp.status
        except TimeoutError:
            return f"{what} took more than {limit_ms:,.0f} ms"
        except aiohttp.ClientError as exc:
            return f"{what} failed ({type(exc).__name__})"
        elapsed_ms = (self.clock.now_ns() - started_ns) / 1e6
        if status == 429 or status >= 500:
            return f"{what} answered {status}"
        if elapsed_ms > limit_ms:
            return f"{what} took {elapsed_ms:,.0f} ms > {limit_ms:,.0f} ms"
        return None
