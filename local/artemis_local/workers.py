"""The background half of the local runtime: what EventBridge schedules and the SQS event
source mapping do on AWS, done by threads calling the same handlers with real events.

* relay: every 5 s, one drain of the outbox into the FIFO queue (in both modes);
* site worker: an SQS poller feeding `functions/site_worker` real FIFO batches;
* schedules, in one of two modes (artemis_local.aws.schedule_mode, `ARTEMIS_LOCAL_SCHEDULES`):
  - EventBridge mode (LocalStack): the template's rules exist on the endpoint and target the
    standard ticks queue. `ScheduleTicks` polls that queue and calls the handler of the
    function whose rule the event names (its `resources` ARN) with the delivered EventBridge
    event, through load_handler and LocalContext, as Lambda would. LocalStack fires `rate(...)`
    rules; a cron rule fires when its time comes.
  - clock mode (moto, which never fires a schedule): `Scheduler` fires the nightly crons
    (tombstone purge 03:00 UTC, drift sweep 04:00 UTC) by the wall clock.

Every loop is a daemon thread; `Workers.stop` signals them all, then joins each with a bound.
A tick's handler runs on the ticks thread, so the relay (whose handler would loop for 50 s on
AWS) gets a short context: one drain; the 5 s relay loop does the steady draining.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from artemis import runtime
from artemis.deadlines import Deadline
from artemis.jobs.relay import drain
from artemis.observability import logger
from artemis.queue import SiteEventsQueue
from artemis.times import rfc3339_seconds, utcnow
from artemis_local.functions import REPO_ROOT, Handler, LocalContext, load_handler
from artemis_local.sqs_source import Poller

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

    from artemis_local.aws import ScheduleResources

RELAY_INTERVAL_SECONDS = 5.0
STOP_TIMEOUT_SECONDS = 10.0
DEFAULT_TIMEOUT_MS = 900_000
# The relay handler drains until its remaining time less a 10 s reserve is spent: 15 s → one
# drain of ≤ 5 s, so a relay tick never holds the ticks thread (or a stop) for long.
TICK_TIMEOUT_MS = {"relay": 15_000}


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

    def __init__(self, name: str, interval: float, tick: Callable[[], object]) -> None:
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

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
        self._stop.set()
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()


def relay_tick() -> None:
    rt = runtime.current()
    if rt.settings.site_events_queue_url:
        publisher = SiteEventsQueue.of(rt).publisher()
        drain(rt, publisher, deadline=Deadline.after(RELAY_INTERVAL_SECONDS - 1))


def context_for(function: str) -> LocalContext:
    return LocalContext(function, timeout_ms=TICK_TIMEOUT_MS.get(function, DEFAULT_TIMEOUT_MS))


def invoke(function: str, event: dict[str, Any]) -> Any:
    return load_handler(function)(event, context_for(function))


def scheduled_event(event_file: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((REPO_ROOT / "events" / event_file).read_text())
    event["time"] = rfc3339_seconds(utcnow())
    return event


class Scheduler:
    """Clock mode: the nightly crons by the wall clock."""

    def __init__(
        self,
        crons: tuple[Cron, ...] = CRONS,
        clock: Callable[[], datetime] = utcnow,
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


@dataclass(frozen=True)
class Dispatch:
    """One delivered EventBridge event and what became of it."""

    rule: str | None  # the rule name; None when the event named no known rule
    function: str | None
    event_id: str
    ok: bool
    result: Any = None
    error: str | None = None


class ScheduleTicks:
    """EventBridge mode: receive the ticks queue's events and call the rule's function.

    A message is deleted once received (an asynchronous invocation has taken the event); a
    failed handler is logged, as a failed scheduled invocation would be, and not retried.
    `dispatched` keeps the most recent dispatches, newest last."""

    KEEP = 100

    def __init__(
        self,
        sqs: SQSClient,
        schedules: ScheduleResources,
        *,
        wait_seconds: int = 1,
        handler_for: Callable[[str], Handler] = load_handler,
    ) -> None:
        self._sqs = sqs
        self._schedules = schedules
        self._wait_seconds = wait_seconds
        self._handler_for = handler_for
        self._handlers: dict[str, Handler] = {}
        self._lock = threading.Lock()
        self.dispatched: list[Dispatch] = []

    def poll_once(self) -> int:
        """Receive up to 10 ticks (long poll `wait_seconds`) and dispatch each; the count."""
        reply = self._sqs.receive_message(
            QueueUrl=self._schedules.ticks_queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=self._wait_seconds,
        )
        messages = reply.get("Messages", [])
        if messages:
            self._sqs.delete_message_batch(
                QueueUrl=self._schedules.ticks_queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                    for i, m in enumerate(messages)
                ],
            )
        for message in messages:
            self._record(self.dispatch(message.get("Body", "")))
        return len(messages)

    def dispatch(self, body: str) -> Dispatch:
        try:
            event = json.loads(body)
            if not isinstance(event, dict):
                raise ValueError("not a JSON object")
        except ValueError as err:
            logger.error("local.tick_malformed", extra={"error": str(err)})
            return Dispatch(None, None, "", ok=False, error=f"malformed tick: {err}")
        event_id = str(event.get("id", ""))
        raw = event.get("resources")
        resources = [r for r in raw if isinstance(r, str)] if isinstance(raw, list) else []
        rule = self._schedules.rule_for(resources)
        if rule is None:
            logger.warning("local.tick_unknown_rule", extra={"resources": resources})
            return Dispatch(None, None, event_id, ok=False, error=f"no rule for {resources}")
        function = rule.schedule.function_dir
        logger.info("local.tick", extra={"rule": rule.schedule.rule_name, "function": function})
        try:
            handler = self._handlers.get(function)
            if handler is None:
                handler = self._handlers[function] = self._handler_for(function)
            result = handler(event, context_for(function))
        except Exception as err:
            logger.exception("local.tick_failed", extra={"function": function})
            return Dispatch(
                rule.schedule.rule_name, function, event_id, ok=False,
                error=f"{type(err).__name__}: {err}",
            )  # fmt: skip
        return Dispatch(rule.schedule.rule_name, function, event_id, ok=True, result=result)

    def _record(self, dispatch: Dispatch) -> None:
        with self._lock:
            self.dispatched.append(dispatch)
            del self.dispatched[: -self.KEEP]

    def snapshot(self) -> list[Dispatch]:
        with self._lock:
            return list(self.dispatched)


NOTIFIER_POLLERS = 4


@dataclass
class Workers:
    """Start the relay loop, the site-worker and notifier pollers and the schedules; stop them
    together.

    `schedules` set → EventBridge mode (ScheduleTicks on its ticks queue); None → clock mode
    (Scheduler). `relay_loop` and `site_worker` can be turned off (tests that drive them)."""

    schedules: ScheduleResources | None = None
    relay_loop: bool = True
    site_worker: bool = True
    notifier: bool = True
    relay: _Loop | None = None
    poller: Poller | None = None
    notifier_pollers: list[Poller] = field(default_factory=list)
    scheduler: _Loop | None = None
    ticks: ScheduleTicks | None = None
    ticks_loop: _Loop | None = None
    _started: list[Any] = field(default_factory=list)

    def start(self) -> Workers:
        rt = runtime.current()
        try:
            if self.relay_loop:
                self.relay = self._keep(_Loop("relay", RELAY_INTERVAL_SECONDS, relay_tick).start())
            if self.site_worker and rt.settings.site_events_queue_url:
                worker = load_handler("site_worker")
                self.poller = self._keep(Poller(
                    rt.sqs, rt.settings.site_events_queue_url, worker,
                    lambda: LocalContext("site_worker", timeout_ms=300_000), name="site-worker",
                ).start())  # fmt: skip
            if self.notifier and rt.settings.notifications_queue_url:
                # Several pollers, as Lambda runs several notifier invocations on a FIFO source
                # with many groups: a batch held up by a slow receiver holds up no other.
                notifier = load_handler("notifier")
                for n in range(NOTIFIER_POLLERS):
                    self.notifier_pollers.append(self._keep(Poller(
                        rt.sqs, rt.settings.notifications_queue_url, notifier,
                        lambda: LocalContext("notifier", timeout_ms=120_000),
                        name=f"notifier-{n}",
                    ).start()))  # fmt: skip
            if self.schedules is not None:
                self.ticks = ScheduleTicks(rt.sqs, self.schedules)
                # poll_once long-polls for 1 s; the pause between polls bounds the retries
                # (and the log lines) while the endpoint is unreachable.
                self.ticks_loop = self._keep(
                    _Loop("schedule-ticks", 0.5, self.ticks.poll_once).start()
                )
            else:
                self.scheduler = self._keep(_Loop("scheduler", 30.0, Scheduler().tick).start())
        except BaseException:
            self.stop()
            raise
        return self

    def _keep(self, part: Any) -> Any:
        self._started.append(part)
        return part

    def stop(self) -> None:
        """Tell every worker to stop first, then wait for each: the waits overlap, so the
        whole stop takes about the slowest part (each join is bounded)."""
        parts = list(reversed(self._started))
        self._started.clear()
        for part in parts:
            part.signal_stop()
        for part in parts:
            part.stop(timeout=STOP_TIMEOUT_SECONDS)
