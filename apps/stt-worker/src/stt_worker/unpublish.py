"""``stt-worker --remove-discovery``: take this worker's device out of Home Assistant.

An empty retained payload on a discovery config topic deletes the entity (and the device with its
last entity). Each one is sent QoS 1 and waited for, so the command exits 0 only once the broker has
them all. It connects under its own client id and leaves the worker's availability topic alone, so
it can run beside a worker (which would announce itself again when Home Assistant restarts: stop or
set HA_DISCOVERY=0 on the worker first).
"""

from __future__ import annotations

import os

import structlog

from .mqtt_link import MqttLink
from .payloads import Payloads
from .settings import WorkerSettings

log = structlog.get_logger(__name__)

TIMEOUT_S = 10.0


async def remove_discovery(settings: WorkerSettings) -> int:
    client_id = f"{settings.mqtt_client_id or f'stt-worker-{settings.site_id}'}-remove-{os.getpid()}"
    link = MqttLink(settings, client_id, announce=False)
    await link.start()
    try:
        if not await link.wait_connected(TIMEOUT_S):
            log.error("discovery_remove_failed", reason="broker unreachable",
                      mqtt=f"{settings.mqtt_host}:{settings.mqtt_port}")
            return 1
        removals = Payloads(settings).undiscovery()
        for message in removals:
            link.publish(message)
        if not await link.flush(TIMEOUT_S):
            log.error("discovery_remove_failed", reason="not acknowledged", pending=link.queued)
            return 1
        log.info("discovery_removed", configs=len(removals), prefix=settings.ha_discovery_prefix,
                 site_id=settings.site_id)
        return 0
    finally:
        await link.close(timeout_s=2.0)
