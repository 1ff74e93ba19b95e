"""Each final POSTed as JSON to WEBHOOK_URL (Home Assistant's ``/api/webhook/<id>``, a Node-RED http-in
node, anything): from a bounded queue by one background task, with bounded, jittered retries for a
receiver that is down or says 5xx/429. A session only puts its final on the queue; a receiver that
stays away loses the oldest finals past the bound, each one counted and logged, never a session's
time."""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp
import structlog
from stt_core import __version__
from stt_core.daemon.backoff import Backoff

from .metrics import Metrics
from .settings import ServerSettings
from .transcript import Transcript

log = structlog.get_logger(__name__)
MAX_QUEUED = 1000
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


class WebhookSink:
    def __init__(self, settings: ServerSettings, metrics: Metrics) -> None:
        assert settings.webhook_url is not None
        self.url = str(settings.webhook_url)
        self.timeout = settings.webhook_timeout_s
        self.retries = settings.webhook_retries
        self.metrics = metrics
        self.queue: asyncio.Queue[Transcript] = asyncio.Queue(MAX_QUEUED)
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        # aiohttp ignores *_PROXY by default: transcripts meant for the LAN stay off an internet proxy
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout),
                                              headers={"User-Agent": f"stt-server/{__version__}"})
        self._task = asyncio.get_running_loop().create_task(self._run())
        log.info("webhook_transcripts", url=_shown(self.url))

    def put(self, t: Transcript) -> None:
        if not t.final:
            return
        if self.queue.full():
            dropped = self.queue.get_nowait()
            self.metrics.error("webhook_dropped", dialect=dropped.dialect)
            log.warning("webhook_dropped", site=dropped.site, segment=dropped.segment)
        self.queue.put_nowait(t)

    async def close(self) -> None:
        """What is queued gets one bounded chance to go out, then the task is stopped."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.timeout * 2):
                await self.queue.join()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    async def _run(self) -> None:
        while True:
            t = await self.queue.get()
            try:
                await self._deliver(t)
            finally:
                self.queue.task_done()

    async def _deliver(self, t: Transcript) -> None:
        assert self._session is not None
        backoff = Backoff(initial=0.5, cap=10.0)
        for attempt in range(self.retries + 1):
            try:
                async with self._session.post(self.url, json=t.fields()) as resp:
                    if resp.status < 300:
                        return
                    why = f"HTTP {resp.status}"
                    if resp.status not in RETRY_STATUSES:
                        break  # the receiver refuses this request: sending it again will not help
            except (aiohttp.ClientError, TimeoutError) as exc:
                why = str(exc) or type(exc).__name__
            if attempt < self.retries:
                await asyncio.sleep(backoff.next_delay())
        self.metrics.error("webhook_failed", dialect=t.dialect)
        log.warning("webhook_failed", url=_shown(self.url), site=t.site, segment=t.segment, error=why)


def _shown(url: str) -> str:
    """The URL for the log without its path: a Home Assistant webhook id is a secret."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/..."
