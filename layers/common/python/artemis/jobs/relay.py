"""The outbox relay: claim → publish → mark, repeated.

One `drain` is one tick of the relay loop and writes one `job_runs` row (`relay`). It keeps
claiming passes of up to `limit` rows (so a backlog clears within one tick, not at `limit`
rows per tick) until a pass returns fewer than `limit` rows, a pass stops on a transport
failure, a pass publishes nothing, or the deadline is near.

Each pass:
1. claims with one autocommit statement, committed before anything is sent; the statement
   returns `clock_timestamp()`, which every message of the pass carries as `claimed_at` (a
   later instant than the commit of every claimed row);
2. publishes the rows in id order (see `SqsPublisher` for which failures stop the batch);
3. marks exactly the published ids with the relay clock read at the start of the pass and
   releases the claim of every other row of the batch at once, so a failed row is retried
   on the next pass or tick instead of after the 5-minute lease.

The drain holds one autocommit connection for all its passes (two round trips per pass)
under `outbox.RELAY_SESSION`: a 10 s statement timeout, no wait for the WAL flush, and an
index-ordered claim.

Failure policy: publish failures, a failed mark and a failed claim after the first pass never
raise; they are in the `RelayResult` (`ok` is false), the `job_runs` row is finished as
`failed` with the first error, and the caller (the scheduled function) reports the invocation
as failed so alarms fire. `drain` raises only when nothing could be done: the `job_runs` row
could not be started or the first claim failed (the database is unreachable). Rows published
but not marked (a mark failure, a crash) stay claimed and are published again after the lease
(at-least-once); the FIFO deduplication id makes a re-publish within 5 minutes a no-op and
later duplicates are harmless (the worker reads the site's current state, not the message).

`run_relay` is one scheduled invocation: a `drain` at least every `interval_seconds` (5 s)
until the deadline, so a row committed during the invocation waits seconds, not a minute. A
drain that raised is logged (`relay.drain_raised`) and the loop goes on; at the end the
invocation raises `RelayFailed` if any drain had a failure, so the function's Errors metric
and its alarm fire. The schedule's own retries stay off: the next tick is the retry.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import psycopg

from artemis.db import outbox
from artemis.deadlines import Deadline
from artemis.jobs.common import Clock, job_run, system_clock
from artemis.observability import emit_metric, logger
from artemis.queue import ClaimedMessage, Publisher

if TYPE_CHECKING:
    from artemis.config import JobSettings
    from artemis.runtime import Runtime

JOB = "relay"
PASS_RESERVE_SECONDS = 2.0  # a pass is not started with less time than this left
INTERVAL_SECONDS = 5.0  # one drain at least this often within an invocation


@dataclass
class RelayResult:
    passes: int = 0
    claimed: int = 0
    published: int = 0
    failed: int = 0
    released: int = 0
    errors: list[str] = field(default_factory=list)
    pass_ms: list[float] = field(default_factory=list)
    # idle | drained | budget | publish_failure | nothing_published | mark_failure | claim_failure
    stopped_by: str = ""

    @property
    def ok(self) -> bool:
        return not self.errors and self.failed == 0

    def add(self, other: RelayResult) -> None:
        """Fold another drain's counts and errors into these totals."""
        self.passes += other.passes
        self.claimed += other.claimed
        self.published += other.published
        self.failed += other.failed
        self.released += other.released
        self.errors.extend(other.errors)

    def counts(self) -> dict[str, int]:
        return {
            "passes": self.passes,
            "claimed": self.claimed,
            "published": self.published,
            "failed": self.failed,
            "released": self.released,
        }


class RelayFailed(Exception):
    """A drain (or a relay invocation) that had failures; carries what it did."""

    def __init__(self, result: RelayResult) -> None:
        first = result.errors[0] if result.errors else f"{result.failed} rows failed to publish"
        super().__init__(f"{first} ({result.counts()})")
        self.result = result


def run_relay(
    rt: Runtime[JobSettings],
    publisher: Publisher,
    *,
    deadline: Deadline,
    interval_seconds: float = INTERVAL_SECONDS,
    min_drain_seconds: float = PASS_RESERVE_SECONDS,
    limit: int = outbox.CLAIM_LIMIT,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Drain every `interval_seconds` until `deadline`; see the module docstring. Returns the
    totals, or raises RelayFailed at the end if any drain failed."""
    total = RelayResult()
    drains = 0
    while True:
        next_tick = Deadline.after(interval_seconds)
        drains += 1
        try:
            got = drain(
                rt, publisher, deadline=deadline, limit=limit,
                pass_reserve_seconds=min_drain_seconds,
            )  # fmt: skip
        except Exception as err:  # e.g. the database is unreachable; the next tick retries
            logger.exception("relay.drain_raised", extra={"op": "relay.run"})
            got = RelayResult(errors=[f"{type(err).__name__}: {err}"], stopped_by="error")
        total.add(got)
        wait = next_tick.remaining()
        if got.stopped_by == "budget" or deadline.remaining() < wait + min_drain_seconds:
            break
        sleep(wait)
    summary = {"drains": drains, **total.counts(), "errors": total.errors[:10]}
    logger.info("relay.invocation", extra=summary)
    if not total.ok:
        raise RelayFailed(total)
    return summary


def drain(
    rt: Runtime[JobSettings],
    publisher: Publisher,
    *,
    deadline: Deadline,
    limit: int = outbox.CLAIM_LIMIT,
    clock: Clock = system_clock,
    claim_ttl_seconds: float = outbox.CLAIM_TTL_SECONDS,
    pass_reserve_seconds: float = PASS_RESERVE_SECONDS,
) -> RelayResult:
    """One relay tick; see the module docstring. A pass is started only while the deadline
    leaves `pass_reserve_seconds`."""
    result = RelayResult()
    with rt.db.transaction() as conn:
        if not outbox.has_ready(conn):  # an idle tick leaves no job_runs row (one per 5 s)
            result.stopped_by = "idle"
            return result
    try:
        with job_run(rt.db, JOB) as run:
            try:
                with rt.db.session() as pooled, outbox.relay_session(pooled) as conn:
                    _passes(
                        conn, publisher, result, deadline, limit, clock, claim_ttl_seconds,
                        pass_reserve_seconds,
                    )  # fmt: skip
            finally:
                run.counts.update(result.counts())
                _signals(rt, result)
            if not result.ok:
                raise RelayFailed(result)  # finishes the job_runs row as failed, with the error
    except RelayFailed:
        logger.error(
            "relay.drain_failed",
            extra={"op": "relay.run", **result.counts(), "errors": result.errors},
        )
    return result


def _passes(
    conn: psycopg.Connection,
    publisher: Publisher,
    result: RelayResult,
    deadline: Deadline,
    limit: int,
    clock: Clock,
    ttl: float,
    reserve: float,
) -> None:
    while True:
        if not deadline.has(reserve):
            result.stopped_by = "budget"
            return
        started_at = clock()
        began = time.monotonic()
        try:
            batch = _claim(conn, limit, ttl)
        except Exception as err:
            if result.passes == 0:
                raise  # nothing could be done: the database is not answering
            logger.exception("relay.claim_failed")
            result.errors.append(f"claim failed: {type(err).__name__}: {err}")
            result.stopped_by = "claim_failure"
            return
        if not batch:
            result.stopped_by = "drained"
            return
        result.passes += 1
        result.claimed += len(batch)
        outcome = publisher.publish(batch)
        published = set(outcome.published)
        unpublished = [m.id for m in batch if m.id not in published]
        result.published += len(published)
        result.failed += len(outcome.failed)
        if outcome.error:
            result.errors.append(outcome.error)
        try:
            # Autocommit: each statement commits on its own (they touch disjoint rows).
            outbox.mark_published(conn, sorted(published), started_at)
            result.released += outbox.release_claims(conn, unpublished)
        except Exception as err:
            # The published rows stay claimed and are published again after the lease.
            logger.exception("relay.mark_failed", extra={"published": len(published)})
            result.errors.append(f"mark failed: {type(err).__name__}: {err}")
            result.stopped_by = "mark_failure"
            return
        result.pass_ms.append((time.monotonic() - began) * 1000.0)
        logger.debug(
            "relay.pass",
            extra={
                "claimed": len(batch), "published": len(published),
                "failed": len(outcome.failed), "released": len(unpublished),
                "error": outcome.error,
            },
        )  # fmt: skip
        if outcome.stopped:
            result.stopped_by = "publish_failure"
            return
        if not published:
            result.stopped_by = "nothing_published"  # a head of unpublishable rows: no spinning
            return
        if len(batch) < limit:
            result.stopped_by = "drained"
            return


def _claim(conn: psycopg.Connection, limit: int, ttl: float) -> list[ClaimedMessage]:
    """One autocommit statement: the claim is committed before anything is published."""
    rows, claimed_at = outbox.claim_stamped(conn, limit, ttl)
    return [ClaimedMessage(m.id, m.topic, m.payload, claimed_at) for m in rows]


def _signals(rt: Runtime[JobSettings], result: RelayResult) -> None:
    """The relay's signals: published count, failures, and the backlog (count and oldest
    age), which the alarms watch."""
    if result.pass_ms:  # one EMF line per drain: the values array holds every pass
        emit_metric("outbox.pass_ms", result.pass_ms[0], "Milliseconds", more=result.pass_ms[1:])
    emit_metric("outbox.published", result.published)
    emit_metric("outbox.publish_failures", result.failed)
    try:
        with rt.db.transaction() as conn:
            backlog = outbox.backlog(conn)
    except Exception:
        logger.exception("relay.backlog_failed")
        return
    emit_metric("outbox.unpublished_count", backlog.unpublished)
    emit_metric("outbox.oldest_unpublished_age_s", backlog.oldest_age_seconds, "Seconds")


def publish_now(
    rt: Runtime[JobSettings], publisher: Publisher, ids: list[int], *, clock: Clock = system_clock
) -> RelayResult:
    """The fast path: publish the rows a request just committed, right away, as one relay pass
    over those rows alone (the same claim, message bodies, FIFO group and deduplication id as
    the relay's, so a later relay send of a row is dropped by the queue). Never raises: what
    it could not send stays in the outbox for the relay, the backstop."""
    result = RelayResult()
    if not ids:
        return result
    started_at = clock()
    try:
        with rt.db.session() as pooled, outbox.relay_session(pooled) as conn:
            rows, claimed_at = outbox.claim_ids_stamped(conn, ids)
            batch = [ClaimedMessage(m.id, m.topic, m.payload, claimed_at) for m in rows]
            if not batch:
                return result
            result.passes, result.claimed = 1, len(batch)
            outcome = publisher.publish(batch)
            published = set(outcome.published)
            result.published, result.failed = len(published), len(outcome.failed)
            if outcome.error:
                result.errors.append(outcome.error)
            outbox.mark_published(conn, sorted(published), started_at)
            result.released = outbox.release_claims(
                conn, [m.id for m in batch if m.id not in published]
            )
    except Exception as err:  # the relay sends what this left behind
        logger.exception("relay.fast_path_failed", extra={"ids": len(ids)})
        result.errors.append(f"{type(err).__name__}: {err}")
    return result


def send_now(rt: Runtime[JobSettings], ids: list[int]) -> RelayResult:
    """`publish_now` to the configured queues (nothing without a site-events queue)."""
    if not ids or not rt.settings.site_events_queue_url:
        return RelayResult()
    from artemis.queue import SiteEventsQueue

    return publish_now(rt, SiteEventsQueue.of(rt).publisher(), ids)
