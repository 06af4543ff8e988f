"""Webhook subscriptions (`hook_subscriptions`), their deliveries (`hook_deliveries`) and the
attempts (`hook_attempts`).

`notify` runs inside the transaction of the change it reports: one delivery row and one
outbox row (`hook.delivery`) per live subscription of the site that asked for the event, so
an event commits with its change or not at all, and each subscriber's deliveries are
ordered by the outbox (the relay sends them in one FIFO message group per subscription).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import Connection

from artemis import hook_events
from artemis.db import outbox
from artemis.keys import Dirname, KeyLayout

HOOK_DELIVERY = "hook.delivery"  # the outbox topic of one delivery
# The outbox topic of an alias move GitHub is told of (a deployment and its statuses), when
# the GitHub App is configured: `{"site", "alias", "deployId", "previousDeployId", "url"}`.
GITHUB_DEPLOYMENT = "github.deployment"


@dataclass(frozen=True)
class HookRow:
    id: str
    site: str
    url: str
    events: tuple[str, ...]
    created_at: datetime
    created_by: str


@dataclass(frozen=True)
class DeliveryTarget:
    """What the notifier needs to attempt a delivery."""

    id: str
    subscription_id: str
    url: str
    secret: str
    event_type: str
    body: bytes
    retry_from: datetime
    state: str
    attempts: int


@dataclass(frozen=True)
class AttemptRow:
    attempt: int
    at: datetime
    status_code: int | None
    error: str | None
    duration_ms: int


@dataclass(frozen=True)
class DeliveryRow:
    id: str
    event_id: str
    event_type: str
    created_at: datetime
    state: str
    attempts: int
    finished_at: datetime | None
    last_error: str | None
    log: tuple[AttemptRow, ...]


class SiteMissing(Exception):
    """The site is not registered."""


class HookLimit(Exception):
    """The site holds as many subscriptions as it may."""


_COLUMNS = "id, site, url, events, created_at, created_by"


def _hook(values: tuple[Any, ...]) -> HookRow:
    hook_id, site, url, events, at, by = values
    return HookRow(hook_id, site, url, tuple(events), at, by)


def for_site(conn: Connection, site: str) -> list[HookRow]:
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM hook_subscriptions WHERE site = %s AND retired_at IS NULL"
        " ORDER BY created_at, id",
        [site],
    ).fetchall()
    return [_hook(r) for r in rows]


def get(conn: Connection, site: str, hook_id: str) -> HookRow | None:
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM hook_subscriptions"
        " WHERE id = %s AND site = %s AND retired_at IS NULL",
        [hook_id, site],
    ).fetchone()
    return _hook(row) if row else None


def insert(
    conn: Connection, site: str, url: str, events: Sequence[str], secret: str, created_by: str,
    *, limit: int,
) -> HookRow:  # fmt: skip
    """A new subscription of a registered site. The site's row is locked first, so two adds
    cannot both take the last place and a deregistration cannot slip in between."""
    if conn.execute("SELECT 1 FROM sites WHERE slug = %s FOR SHARE", [site]).fetchone() is None:
        raise SiteMissing()
    # Serialize adds of one site (FOR SHARE lets two through together).
    conn.execute("SELECT pg_advisory_xact_lock(hashtext('hooks:' || %s))", [site])
    count = conn.execute(
        "SELECT count(*) FROM hook_subscriptions WHERE site = %s AND retired_at IS NULL", [site]
    ).fetchone()
    if count is not None and count[0] >= limit:
        raise HookLimit()
    row = conn.execute(
        "INSERT INTO hook_subscriptions (id, site, url, events, secret, created_by)"
        f" VALUES (%s, %s, %s, %s, %s, %s) RETURNING {_COLUMNS}",
        [hook_events.mint_hook_id(), site, url, list(events), secret, created_by],
    ).fetchone()
    assert row is not None
    return _hook(row)


def delete(conn: Connection, site: str, hook_id: str) -> HookRow | None:
    """Remove a subscription; its deliveries and their log go with it, so a pending retry
    is dropped rather than sent to a URL its owner withdrew."""
    row = conn.execute(
        f"DELETE FROM hook_subscriptions WHERE id = %s AND site = %s AND retired_at IS NULL"
        f" RETURNING {_COLUMNS}",
        [hook_id, site],
    ).fetchone()
    return _hook(row) if row else None


def retire_site(conn: Connection, site: str) -> int:
    """The site is deregistered: its subscriptions get no more events (call after `notify`
    of `site.deleted`, in the same transaction, so that last event still goes out)."""
    return conn.execute(
        "UPDATE hook_subscriptions SET retired_at = now() WHERE site = %s AND retired_at IS NULL",
        [site],
    ).rowcount


def notify(
    conn: Connection, site: str, dirname: Dirname, event_type: str, data: Mapping[str, Any],
    at: datetime, *, only: str | None = None,
) -> list[str]:  # fmt: skip
    """Write `event_type` for every live subscription of `site` that asked for it (or, with
    `only`, for that subscription whatever it asked for: the ping). Returns the delivery ids."""
    if only is None:
        targets = conn.execute(
            "SELECT id FROM hook_subscriptions WHERE site = %s AND retired_at IS NULL"
            " AND %s = ANY(events) ORDER BY created_at, id",
            [site, event_type],
        ).fetchall()
    else:
        targets = [(only,)]
    if not targets:
        return []
    event_id = hook_events.mint_event_id()
    body = hook_events.event_body(event_id, event_type, at, site, data)
    delivered: list[str] = []
    for (subscription,) in targets:
        delivery = hook_events.mint_delivery_id()
        conn.execute(
            "INSERT INTO hook_deliveries (id, subscription_id, event_id, event_type, body,"
            " created_at, retry_from) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            [delivery, subscription, event_id, event_type, body, at, at],
        )
        outbox.enqueue(
            conn, HOOK_DELIVERY,
            {"site": dirname, "subscription": subscription, "delivery": delivery},
        )  # fmt: skip
        delivered.append(delivery)
    return delivered


def announce(
    conn: Connection, layout: KeyLayout, site: Dirname, event_type: str,
    data: Mapping[str, Any], at: datetime, *, github: bool = False,
) -> list[str]:  # fmt: skip
    """`notify` for the site stored under `site` (a dirname the layout cannot map to a slug
    has no subscribers); with `github` (the App is configured) an alias move is also queued
    for GitHub's deployments."""
    if github and event_type in (hook_events.DEPLOY_FINALIZED, hook_events.ALIAS_MOVED):
        outbox.enqueue(conn, GITHUB_DEPLOYMENT, {
            "site": site, "alias": data["alias"], "deployId": data.get("deployId"),
            "previousDeployId": data.get("previousDeployId"), "url": data.get("url"),
        })  # fmt: skip
    slug = layout.slug_for(site)
    return [] if slug is None else notify(conn, slug, site, event_type, data, at)


def target(conn: Connection, delivery_id: str) -> DeliveryTarget | None:
    """A delivery with its subscription's URL and secret (None once either was removed)."""
    row = conn.execute(
        "SELECT d.id, d.subscription_id, s.url, s.secret, d.event_type, d.body, d.retry_from,"
        " d.state, d.attempts FROM hook_deliveries d"
        " JOIN hook_subscriptions s ON s.id = d.subscription_id WHERE d.id = %s",
        [delivery_id],
    ).fetchone()
    if row is None:
        return None
    return DeliveryTarget(row[0], row[1], row[2], row[3], row[4], bytes(row[5]), row[6],
                          row[7], row[8])  # fmt: skip


def record_attempt(
    conn: Connection, delivery_id: str, attempt: int, at: datetime, status_code: int | None,
    error: str | None, duration_ms: int, *, state: str,
) -> bool:  # fmt: skip
    """Log attempt number `attempt` and set the delivery's state (`pending` to retry,
    `delivered`, `failed`). False when that attempt was already logged (a message received
    twice: the second receive must not count the attempt again)."""
    logged = conn.execute(
        "INSERT INTO hook_attempts (delivery_id, attempt, at, status_code, error, duration_ms)"
        " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
        [delivery_id, attempt, at, status_code, error, duration_ms],
    ).rowcount
    if not logged:
        return False
    conn.execute(
        "UPDATE hook_deliveries SET attempts = %s, state = %s, last_error = %s,"
        " finished_at = CASE WHEN %s = 'pending' THEN NULL ELSE %s END WHERE id = %s",
        [attempt, state, error, state, at, delivery_id],
    )
    return True


def redeliver(conn: Connection, site: str, dirname: Dirname, hook_id: str,
              delivery_id: str) -> bool:  # fmt: skip
    """Send a finished delivery again (same id and bytes: a receiver that has it drops it):
    back to pending, and a new outbox row. False when the subscription has no such delivery."""
    row = conn.execute(
        "UPDATE hook_deliveries d SET state = 'pending', finished_at = NULL, retry_from = now()"
        " FROM hook_subscriptions s WHERE d.id = %s AND d.subscription_id = %s"
        " AND s.id = d.subscription_id AND s.site = %s AND s.retired_at IS NULL RETURNING d.id",
        [delivery_id, hook_id, site],
    ).fetchone()
    if row is None:
        return False
    outbox.enqueue(
        conn, HOOK_DELIVERY, {"site": dirname, "subscription": hook_id, "delivery": delivery_id}
    )
    return True


def recent(conn: Connection, hook_id: str, limit: int) -> list[DeliveryRow]:
    """The subscription's latest deliveries, newest first, each with its attempts (one query
    for the deliveries, one for all their attempts)."""
    rows = conn.execute(
        "SELECT id, event_id, event_type, created_at, state, attempts, finished_at, last_error"
        " FROM hook_deliveries WHERE subscription_id = %s ORDER BY created_at DESC, id LIMIT %s",
        [hook_id, limit],
    ).fetchall()
    ids = [r[0] for r in rows]
    log: dict[str, list[AttemptRow]] = {i: [] for i in ids}
    if ids:
        for delivery, attempt, at, status, error, ms in conn.execute(
            "SELECT delivery_id, attempt, at, status_code, error, duration_ms FROM hook_attempts"
            " WHERE delivery_id = ANY(%s) ORDER BY delivery_id, attempt",
            [ids],
        ).fetchall():
            log[delivery].append(AttemptRow(attempt, at, status, error, ms))
    return [
        DeliveryRow(id=r[0], event_id=r[1], event_type=r[2], created_at=r[3], state=r[4],
                    attempts=r[5], finished_at=r[6], last_error=r[7], log=tuple(log[r[0]]))
        for r in rows
    ]  # fmt: skip
