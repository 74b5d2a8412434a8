"""A real headless Chromium that opens an HTML page from disk and says what it saw: which images
decoded, which tables are there, what the page refers to on the network.

Why a browser and not an HTML parser: a data-URI PNG that is truncated or mis-encoded parses
fine and only fails when something decodes it. ``inspect_page(path)`` starts Debian's ``chromium``
on a throwaway profile, talks the Chrome DevTools Protocol to it over a websocket (aiohttp), then
kills its whole process group and removes the profile, whatever happened. ``make test`` installs
chromium, so a missing binary is an error here, never a skip.

Kept off the network on purpose: every host name, and every IP literal too, resolves to nothing
(``--host-resolver-rules``), and the background services that would phone home are disabled. A
page that asks for the network shows it in ``PageReport.failed_loads`` as
``net::ERR_NAME_NOT_RESOLVED``, without a packet leaving the machine.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from loadlab import runloop

CHROMIUM_NAMES = ("chromium", "chromium-browser")
"""Debian's package installs ``chromium``; Ubuntu's transitional one ``chromium-browser``."""
FLAGS = (
    "--headless=new",
    # We run as root in a container: Chromium refuses to start as root with its sandbox on.
    "--no-sandbox",
    "--remote-debugging-port=0",  # the kernel picks; Chromium writes it to DevToolsActivePort
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-extensions",
    "--metrics-recording-only",
    "--mute-audio",
    # Every name (and IP literal) resolves to nothing; loopback stays reachable for DevTools.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost",
    "--disable-gpu",
)
POLL_S = 0.02
"""Between looks at the profile for DevToolsActivePort: Chromium takes ~0.3-1 s to write it."""
STOP_WAIT_S = 5.0
"""After SIGKILL a process is gone in milliseconds; this bound only catches a stuck kernel."""
STDERR_TAIL_LINES = 3
DBUS_NOISE = ":ERROR:dbus/"
"""Chromium logs a dozen lines per start about the missing system bus of a container; they never
explain a failure, so the tail quoted in errors skips them."""
MAX_MESSAGE_BYTES = 256 * 1024 * 1024
"""A full-page screenshot of a long report is a few MB of base64; aiohttp's default cap is 4 MB."""


class BrowserError(RuntimeError):
    """Chromium could not be started, could not open the page, or stopped answering."""

    def __init__(self, message: str, *, browser_pid: int | None = None) -> None:
        super().__init__(message)
        self.browser_pid = browser_pid
        """The Chromium that failed (already killed), so a test can check it is gone."""


@dataclass(frozen=True)
class ImageInfo:
    src: str
    """The ``src`` attribute, cut to 80 characters (a data URI would otherwise be megabytes)."""
    is_data_uri: bool
    complete: bool
    """The browser is done with it: loaded, or given up on (a broken image is complete too)."""
    natural_width: int
    natural_height: int

    @property
    def decoded(self) -> bool:
        """The bytes became pixels: complete with a non-zero natural size."""
        return self.complete and self.natural_width > 0


@dataclass(frozen=True)
class TableInfo:
    id: str
    caption: str
    rows: int
    """Every ``<tr>`` of the table, header rows included (``HTMLTableElement.rows``)."""


@dataclass(frozen=True)
class FailedLoad:
    url: str
    error: str
    """Chromium's net error, e.g. ``net::ERR_NAME_NOT_RESOLVED`` (the resolver rules held)."""


@dataclass(frozen=True)
class PageReport:
    title: str
    images: tuple[ImageInfo, ...]
    tables: tuple[TableInfo, ...]
    external_refs: tuple[str, ...]
    """Every ``src``/``href`` attribute that is neither a ``data:`` URI nor a ``#fragment``: what
    a self-contained page must not have."""
    failed_loads: tuple[FailedLoad, ...]
    """Requests Chromium started and gave up on, e.g. a URL the resolver rules blocked. An image
    whose bytes arrived but did not decode is not here: see ``images``."""
    text_length: int
    """``document.body.innerText.length``: zero means nothing visible was rendered."""
    screenshot: Path | None
    browser_pid: int
    """The Chromium that rendered the page, killed before this report was returned."""

    @property
    def all_images_decoded(self) -> bool:
        return all(image.decoded for image in self.images)

    @property
    def undecoded_images(self) -> tuple[ImageInfo, ...]:
        return tuple(image for image in self.images if not image.decoded)

    def table(self, table_id: str) -> TableInfo:
        """The table with this id; KeyError listing the ids present when there is none."""
        for table in self.tables:
            if table.id == table_id:
                return table
        found = ", ".join(repr(t.id) for t in self.tables) or "no tables"
        raise KeyError(f"no table with id {table_id!r} (found: {found})")


@dataclass(frozen=True)
class Chromium:
    """A running headless Chromium: its process and the port its DevTools answer on."""

    pid: int
    port: int
    stderr_path: Path


def chromium_path() -> str | None:
    """The Chromium executable on PATH, or None when it is not installed."""
    found = (shutil.which(name) for name in CHROMIUM_NAMES)
    return next((path for path in found if path is not None), None)


def _with_stderr(message: str, stderr_path: Path) -> str:
    """``message`` and the last meaningful lines Chromium wrote, on one line."""
    try:
        text = stderr_path.read_text(errors="replace")
    except OSError:
        return message
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and DBUS_NOISE not in ln]
    return f"{message} (stderr: {' | '.join(lines[-STDERR_TAIL_LINES:])})" if lines else message


def _read_port(profile: Path) -> int | None:
    """The port from DevToolsActivePort (first line; the second is the browser's ws path)."""
    try:
        first = (profile / "DevToolsActivePort").read_text().split("\n", 1)[0].strip()
    except FileNotFoundError:
        return None
    # Written in one go, but a look can still land between create and write: an empty or
    # partial first line is "not yet".
    return int(first) if first.isdigit() and int(first) > 0 else None


def _wait_for_port(
    process: subprocess.Popen[bytes], profile: Path, stderr_path: Path, timeout_s: float
) -> int:
    deadline = time.monotonic() + timeout_s
    while (port := _read_port(profile)) is None:
        if (code := process.poll()) is not None:
            message = f"chromium exited with {code} before it opened its DevTools port"
        elif time.monotonic() >= deadline:
            message = f"chromium did not open its DevTools port within {timeout_s:g} s"
        else:
            time.sleep(POLL_S)
            continue
        raise BrowserError(_with_stderr(message, stderr_path), browser_pid=process.pid)
    return port


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the whole process group: the profile is thrown away, so there is nothing to save,
    and the renderer and GPU helpers die with the browser instead of being orphaned."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    try:
        process.wait(timeout=STOP_WAIT_S)
    except subprocess.TimeoutExpired:
        raise BrowserError(
            f"chromium (pid {process.pid}) outlived SIGKILL by {STOP_WAIT_S:g} s",
            browser_pid=process.pid,
        ) from None
    # The helpers were reparented when the browser died; wait until init has reaped them, so
    # the profile is no longer written to when it is removed.
    deadline = time.monotonic() + STOP_WAIT_S
    while time.monotonic() < deadline:
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(POLL_S)


def _isolated_env(workdir: Path) -> dict[str, str]:
    """HOME and the XDG folders inside the throwaway folder: even with ``--user-data-dir``,
    Chromium keeps crash reports in ~/.config/chromium and dconf settings in ~/.cache."""
    home = {"HOME": "home", "XDG_CONFIG_HOME": "home/.config", "XDG_CACHE_HOME": "home/.cache"}
    return {**os.environ, **{name: str(workdir / sub) for name, sub in home.items()}}


@contextlib.contextmanager
def running_chromium(*, timeout_s: float = 30, binary: str | None = None) -> Iterator[Chromium]:
    """Start headless Chromium on a fresh profile; kill it and remove the profile on exit.

    ``binary`` replaces the installed Chromium (tests start stand-ins that fail to start)."""
    executable = binary or chromium_path()
    if executable is None:
        names = " or ".join(CHROMIUM_NAMES)
        raise BrowserError(
            f"{names} is not on PATH (make test installs it: apt-get install chromium)"
        )
    workdir = Path(tempfile.mkdtemp(prefix="loadlab-chromium-"))
    profile = workdir / "profile"
    stderr_path = workdir / "stderr.log"
    process: subprocess.Popen[bytes] | None = None
    try:
        # Stderr to a file, not a pipe: nobody reads a pipe while the page loads, and Chromium
        # blocks once it holds 64 KB.
        with stderr_path.open("wb") as stderr:
            process = subprocess.Popen(
                [executable, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,  # its own process group, so _stop reaches every helper
                env=_isolated_env(workdir),
            )
        port = _wait_for_port(process, profile, stderr_path, timeout_s)
        yield Chromium(process.pid, port, stderr_path)
    finally:
        try:
            if process is not None:
                _stop(process)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)


def inspect_page(
    path: Path,
    *,
    screenshot: Path | None = None,
    timeout_s: float = 30,
    binary: str | None = None,
) -> PageReport:
    """Open ``path`` in headless Chromium and report what it rendered.

    ``timeout_s`` bounds Chromium's start and, separately, the page's load and inspection. Writes
    a full-page PNG to ``screenshot`` when given. Raises BrowserError (one line) when Chromium is
    missing, does not start, cannot open the file, or stops answering; Chromium is gone either way.
    """
    with running_chromium(timeout_s=timeout_s, binary=binary) as browser:
        url = path.absolute().as_uri()
        page, events, png = runloop.run(_inspect(browser, url, screenshot is not None, timeout_s))
    if screenshot is not None and png is not None:
        screenshot.write_bytes(png)
    return _report(page, events, screenshot, browser.pid)


PAGE_SCRIPT = """(() => {
  const refs = [];
  for (const el of document.querySelectorAll('[src], [href]')) {
    for (const name of ['src', 'href']) {
      if (el.hasAttribute(name)) refs.push(el.getAttribute(name));
    }
  }
  return {
    title: document.title,
    images: Array.from(document.images, (img) => ({
      src: img.getAttribute('src') || '',
      complete: img.complete,
      size: [img.naturalWidth, img.naturalHeight],
    })),
    tables: Array.from(document.querySelectorAll('table'), (t) => ({
      id: t.id,
      caption: t.caption ? t.caption.innerText.trim() : '',
      rows: t.rows.length,
    })),
    refs: refs,
    textLength: document.body ? document.body.innerText.length : 0,
  };
})()"""
"""Read in the page after its load event: by then every image has loaded or failed."""
SRC_CHARS = 80


class _DevTools:
    """One page's DevTools websocket, used strictly in turn: a command's answer is read in line,
    and the events that arrive meanwhile are kept (in order) for ``wait_event`` and the report."""

    def __init__(self, stderr_path: Path) -> None:
        self.stderr_path = stderr_path
        """Quoted when Chromium hangs up on us: it says why it crashed."""
        self.waiting_for = "the page list at /json/list"
        """What we wait on now, for the message when the deadline passes."""
        self.events: list[dict[str, Any]] = []
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._last_id = 0

    async def connect(self, http: aiohttp.ClientSession, port: int) -> None:
        async with http.get(f"http://127.0.0.1:{port}/json/list") as response:
            targets: list[dict[str, Any]] = await response.json()
        pages = [t for t in targets if t.get("type") == "page"]
        if not pages:
            raise BrowserError(f"chromium lists no page target: {[t.get('type') for t in targets]}")
        self.waiting_for = "the page's DevTools websocket"
        self._ws = await http.ws_connect(
            pages[0]["webSocketDebuggerUrl"], max_msg_size=MAX_MESSAGE_BYTES
        )

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()

    async def _receive(self) -> dict[str, Any]:
        assert self._ws is not None, "connect() first"
        message = await self._ws.receive()
        if message.type is not aiohttp.WSMsgType.TEXT:
            why = f"chromium closed DevTools while we waited for {self.waiting_for}"
            raise BrowserError(_with_stderr(why, self.stderr_path))
        decoded: dict[str, Any] = json.loads(message.data)
        return decoded

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        assert self._ws is not None, "connect() first"
        self._last_id += 1
        self.waiting_for = f"the answer to {method}"
        await self._ws.send_json({"id": self._last_id, "method": method, "params": params})
        while True:
            message = await self._receive()
            if message.get("id") == self._last_id:
                if "error" in message:
                    raise BrowserError(f"{method} failed: {message['error'].get('message')}")
                result: dict[str, Any] = message["result"]
                return result
            if "method" in message:
                self.events.append(message)

    async def wait_event(self, method: str) -> None:
        """Return once ``method`` has arrived, now or before; it stays in ``events``."""
        self.waiting_for = method
        seen = any(event["method"] == method for event in self.events)
        while not seen:
            message = await self._receive()
            if "method" in message:
                self.events.append(message)
                seen = message["method"] == method


_Seen = tuple[dict[str, Any], list[dict[str, Any]], bytes | None]
"""What the page script returned, the DevTools events, the screenshot's PNG."""


async def _inspect(browser: Chromium, url: str, screenshot: bool, timeout_s: float) -> _Seen:
    devtools = _DevTools(browser.stderr_path)
    try:
        async with asyncio.timeout(timeout_s), aiohttp.ClientSession() as http:
            await devtools.connect(http, browser.port)
            try:
                return await _read_page(devtools, url, screenshot)
            finally:
                await devtools.close()
    except TimeoutError:
        message = f"chromium did not send {devtools.waiting_for} within {timeout_s:g} s"
    except aiohttp.ClientError as exc:
        message = f"DevTools connection to chromium failed ({type(exc).__name__}: {exc})"
    except BrowserError as exc:
        raise BrowserError(str(exc), browser_pid=browser.pid) from None
    raise BrowserError(_with_stderr(message, browser.stderr_path), browser_pid=browser.pid)


async def _read_page(devtools: _DevTools, url: str, screenshot: bool) -> _Seen:
    await devtools.call("Page.enable")
    await devtools.call("Network.enable")  # for failed_loads
    navigation = await devtools.call("Page.navigate", url=url)
    if navigation.get("errorText"):
        raise BrowserError(f"chromium could not open {url}: {navigation['errorText']}")
    await devtools.wait_event("Page.loadEventFired")
    evaluated = await devtools.call("Runtime.evaluate", expression=PAGE_SCRIPT, returnByValue=True)
    if "exceptionDetails" in evaluated:
        details = evaluated["exceptionDetails"]
        raise BrowserError(f"the page inspection script failed: {details.get('text')}")
    png = await _capture(devtools) if screenshot else None
    return evaluated["result"]["value"], devtools.events, png


async def _capture(devtools: _DevTools) -> bytes:
    """The whole page, not the 800x600 window: clip to the content size, beyond the viewport."""
    size = (await devtools.call("Page.getLayoutMetrics"))["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
    shot = await devtools.call(
        "Page.captureScreenshot", format="png", captureBeyondViewport=True, clip=clip
    )
    return base64.b64decode(shot["data"])


def _report(
    page: dict[str, Any], events: list[dict[str, Any]], screenshot: Path | None, pid: int
) -> PageReport:
    images = tuple(
        ImageInfo(i["src"][:SRC_CHARS], i["src"].startswith("data:"), i["complete"], *i["size"])
        for i in page["images"]
    )
    tables = tuple(TableInfo(t["id"], t["caption"], t["rows"]) for t in page["tables"])
    external = tuple(r for r in page["refs"] if not r.startswith(("data:", "#")))
    return PageReport(
        title=page["title"],
        images=images,
        tables=tables,
        external_refs=external,
        failed_loads=_failed_loads(events),
        text_length=page["textLength"],
        screenshot=screenshot,
        browser_pid=pid,
    )


def _failed_loads(events: list[dict[str, Any]]) -> tuple[FailedLoad, ...]:
    urls: dict[str, str] = {}
    failed: list[FailedLoad] = []
    for event in events:
        params = event["params"]
        if event["method"] == "Network.requestWillBeSent":
            urls[params["requestId"]] = params["request"]["url"]
        elif event["method"] == "Network.loadingFailed":
            url = urls.get(params["requestId"], "?")[:SRC_CHARS]
            failed.append(FailedLoad(url, params.get("errorText", "")))
    return tuple(failed)
