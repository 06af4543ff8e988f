"""The background half of the local runtime: what EventBridge schedules and the SQS event
source mapping do on AWS, done by threads calling the same handlers with real events.

* relay: every 5 s, one drain of the outbox into the FIFO queue;
* site worker: an SQS poller feeding `functions/site_worker` real FIFO batches;
* scheduler: the crons (tombstone purge 03:00 UTC, drift sweep 04:00 UTC) by the wall clock.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from artemis import runtime
from artemis.jobs.common import Deadline
from artemis.jobs.relay import drain
from artemis.observability import logger
from artemis.queue import Poller, SqsPublisher
from artemis_local.functions import REPO_ROOT, LocalContext, load_handler

RELAY_INTERVAL_SECONDS = 5.0


@dataclass(frozen=True)
class Cron:
    function: str
    hour: int  # UTC, daily at HH:00
    event_file: str

    def due_between(self, start: datetime, end: datetime) -> bool:
        """Did HH:00 UTC fall in (start, end]?"""
        first = start.replace(hour=self.hour, minute=0, second=0, microsecond=0)
        return any(start < moment <= end for moment in (first, first + timedelta(days=1)))


CRONS = (
    Cron("tombstone_purge", 3, "tombstone_purge-scheduled.json"),
    Cron("drift_detect", 4, "drift_detect-scheduled.json"),
)


class _Loop:
    """A daemon thread calling `tick` every `interval` seconds until stopped."""

    def __init__(self, name: str, interval: float, tick: Callable[[], None]) -> None:
        self._stop = threading.Event()
        self._interval = interval
        self._tick = tick
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._tick()
            except Exception:  # a failed tick is logged; the loop goes on, as a schedule would
                logger.exception("local.worker_tick_failed", extra={"worker": self._thread.name})
            self._stop.wait(self._interval)

    def start(self) -> _Loop:
        self._thread.start()
        return self

    def signal_stop(self) -> None:
        self._stop.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout)


def relay_tick() -> None:
    rt = runtime.current()
    url = rt.settings.site_events_queue_url
    if url:
        drain(rt, SqsPublisher(rt.sqs, url), deadline=Deadline.after(RELAY_INTERVAL_SECONDS - 1))


def invoke(function: str, event: dict[str, Any]) -> Any:
    return load_handler(function)(event, LocalContext(function, timeout_ms=900_000))


def scheduled_event(event_file: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((REPO_ROOT / "events" / event_file).read_text())
    event["time"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return event


class Scheduler:
    def __init__(
        self,
        crons: tuple[Cron, ...] = CRONS,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._crons = crons
        self._clock = clock
        self._last = clock()

    def tick(self) -> None:
        now = self._clock()
        for cron in self._crons:
            if cron.due_between(self._last, now):
                logger.info("local.cron", extra={"function": cron.function})
                try:
                    invoke(cron.function, scheduled_event(cron.event_file))
                except Exception:
                    logger.exception("local.cron_failed", extra={"function": cron.function})
        self._last = now


@dataclass
class Workers:
    """Start the relay loop, the site-worker poller and the scheduler; stop them in reverse."""

    relay: _Loop | None = None
    poller: Poller | None = None
    scheduler: _Loop | None = None

    def start(self) -> Workers:
        rt = runtime.current()
        self.relay = _Loop("relay", RELAY_INTERVAL_SECONDS, relay_tick).start()
        if rt.settings.site_events_queue_url:
            worker = load_handler("site_worker")
            self.poller = Poller(
                rt.sqs, rt.settings.site_events_queue_url, worker,
                lambda: LocalContext("site_worker", timeout_ms=300_000), name="site-worker",
            ).start()  # fmt: skip
        self.scheduler = _Loop("scheduler", 30.0, Scheduler().tick).start()
        return self

    def stop(self) -> None:
        """Tell every worker to stop first, then wait for each: the waits overlap."""
        parts = [p for p in (self.scheduler, self.poller, self.relay) if p is not None]
        for part in parts:
            part.signal_stop()
        for part in parts:
            part.stop(timeout=10.0)
