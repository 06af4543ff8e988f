"""Webhook subscriptions per site (issue 16): add, list, remove, ping, the delivery log and
redelivery, and `announce`, which every change that notifies calls inside its own transaction.

The site's teams and the registry team manage a site's subscriptions (the per-site gate, or
the registry team for any site). A subscription's URL is checked when it is added (https, a
host that resolves only to public addresses; see artemis.outbound) and again by the notifier
at every attempt, since a name may resolve elsewhere by then. The signing secret is answered
once, by the add; nothing shows it again.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from psycopg import Connection

from artemis import bodies, hook_events, outbound, site_names
from artemis.db import hooks as hooks_db
from artemis.db import sites as sites_db
from artemis.errors import (
    HOOK_URL_ERRORS,
    DeliveryNotFound,
    DependencyError,
    HookLimit,
    HookNotFound,
    InvalidHookEvents,
    InvalidSlug,
    NotFound,
)
from artemis.keys import Slug
from artemis.runtime import Runtime
from artemis.services import audit
from artemis.services.auth import require_site_member
from artemis.services.context import Caller, RequestContext
from artemis.times import rfc3339, utcnow

# The answer's models are imported where it is built: off the cold init (see __init__).
if TYPE_CHECKING:
    from artemis.responses import Hook, HookAttempt, HookCreated, HookDelivery, HookQueued

DELIVERY_LOG_LIMIT = 50


def hook_json(row: hooks_db.HookRow) -> Hook:
    from artemis.responses import Hook

    return Hook(id=row.id, site=row.site, url=row.url, events=list(row.events),
                createdAt=rfc3339(row.created_at), createdBy=row.created_by)  # fmt: skip


def _slug(slug: str) -> Slug:
    if not site_names.is_slug(slug, frozenset()):
        raise InvalidSlug()
    return Slug(slug)


def _gate(rt: Runtime, caller: Caller, slug: str) -> Slug:
    """The registry team for any site, else the site's own teams (the per-site gate)."""
    site = _slug(slug)
    if not rt.github.is_member(caller.login, rt.settings.registry_authz_team, caller.token):
        require_site_member(rt, caller, site)
    return site


def _registered(conn: Connection, slug: Slug) -> None:
    if sites_db.get(conn, slug) is None:
        raise NotFound(f"site {slug!r} is not registered")


@contextmanager
def _site_transaction(
    rt: Runtime, site: Slug, failure: str, hook_id: str | None = None
) -> Iterator[Connection]:
    """A transaction on a registered site (`404 not_found` otherwise) and, given `hook_id`, a
    live webhook of it (`404 hook_not_found`); any other failure is `failure` (502)."""
    try:
        with rt.db.transaction() as conn:
            _registered(conn, site)
            if hook_id is not None and hooks_db.get(conn, site, hook_id) is None:
                raise HookNotFound()
            yield conn
    except (NotFound, HookNotFound):
        raise
    except Exception as err:
        raise DependencyError(failure) from err


def check_url(rt: Runtime, url: str) -> str:
    try:
        outbound.check_url(url, allow_loopback_http=rt.settings.hook_allow_loopback_http)
    except outbound.OutboundRefused as refused:
        raise HOOK_URL_ERRORS[refused.code](str(refused)) from None
    return url


def list_hooks(rt: Runtime, caller: Caller, slug: str) -> list[Hook]:
    site = _gate(rt, caller, slug)
    with _site_transaction(rt, site, "registry_read_failed") as conn:
        rows = hooks_db.for_site(conn, site)
    return [hook_json(row) for row in rows]


def add_hook(
    rt: Runtime, ctx: RequestContext, caller: Caller, slug: str, raw_body: bytes
) -> HookCreated:
    from artemis.responses import HookCreated

    site = _gate(rt, caller, slug)
    body = bodies.parse(bodies.HookBody, raw_body)
    try:
        events = hook_events.check_events(body.events or [])
    except hook_events.InvalidEvents as err:
        raise InvalidHookEvents(str(err)) from None
    url = check_url(rt, body.url)
    secret = hook_events.mint_secret()
    try:
        with rt.db.transaction() as conn:
            row = hooks_db.insert(conn, site, url, events, secret, caller.login,
                                  limit=hook_events.MAX_HOOKS_PER_SITE)  # fmt: skip
    except hooks_db.SiteMissing:
        raise NotFound(f"site {slug!r} is not registered") from None
    except hooks_db.HookLimit:
        raise HookLimit(
            f"site {slug!r} holds {hook_events.MAX_HOOKS_PER_SITE} webhooks; remove one first"
        ) from None
    except Exception as err:
        raise DependencyError("registry_write_failed") from err
    answer = hook_json(row)
    audit.record(rt, ctx, "site.hook.add", site=site,
                 detail={"id": row.id, "url": url, "events": list(events)})  # fmt: skip
    return HookCreated(**answer.model_dump(), secret=secret)


def _hook_id(hook_id: str) -> str:
    if not hook_events.is_hook_id(hook_id):
        raise HookNotFound()  # never a valid id, so never a subscription
    return hook_id


def remove_hook(rt: Runtime, ctx: RequestContext, caller: Caller, slug: str, hook_id: str) -> Hook:
    site = _gate(rt, caller, slug)
    _hook_id(hook_id)
    with _site_transaction(rt, site, "registry_write_failed") as conn:
        row = hooks_db.delete(conn, site, hook_id)
    if row is None:
        raise HookNotFound()
    answer = hook_json(row)
    audit.record(rt, ctx, "site.hook.remove", site=site,
                 detail={"id": row.id, "url": row.url})  # fmt: skip
    return answer


def ping(rt: Runtime, ctx: RequestContext, caller: Caller, slug: str, hook_id: str) -> HookQueued:
    """Queue a `ping` event for one subscription, through the same durable delivery."""
    from artemis.responses import HookQueued

    site = _gate(rt, caller, slug)
    _hook_id(hook_id)
    dirname = rt.settings.key_layout.dirname(site)
    with _site_transaction(rt, site, "registry_write_failed", hook_id) as conn:
        data = {"hookId": hook_id, "actor": caller.login}
        [delivery] = hooks_db.notify(conn, site, dirname, hook_events.PING, data, utcnow(),
                                     only=hook_id)  # fmt: skip
    audit.record(rt, ctx, "site.hook.ping", site=site,
                 detail={"id": hook_id, "delivery": delivery})  # fmt: skip
    return HookQueued(deliveryId=delivery, status="queued")


def deliveries(rt: Runtime, caller: Caller, slug: str, hook_id: str) -> list[HookDelivery]:
    """The subscription's latest deliveries, newest first, each with its attempts."""
    site = _gate(rt, caller, slug)
    _hook_id(hook_id)
    with _site_transaction(rt, site, "registry_read_failed", hook_id) as conn:
        rows = hooks_db.recent(conn, hook_id, DELIVERY_LOG_LIMIT)
    return [_delivery_json(row) for row in rows]


def _attempt_json(a: hooks_db.AttemptRow) -> HookAttempt:
    from artemis.responses import HookAttempt

    known: dict[str, Any] = {"status": a.status_code, "error": a.error}
    return HookAttempt(
        attempt=a.attempt, at=rfc3339(a.at), durationMs=a.duration_ms,
        **{name: value for name, value in known.items() if value is not None},
    )  # fmt: skip


def _delivery_json(row: hooks_db.DeliveryRow) -> HookDelivery:
    from artemis.responses import HookDelivery

    log = [_attempt_json(a) for a in row.log]
    known: dict[str, Any] = {
        "finishedAt": rfc3339(row.finished_at) if row.finished_at else None,
        "lastError": row.last_error,
    }
    return HookDelivery(
        id=row.id, eventId=row.event_id, event=row.event_type, createdAt=rfc3339(row.created_at),
        state=row.state, attempts=row.attempts, log=log,
        **{name: value for name, value in known.items() if value is not None},
    )  # fmt: skip


def redeliver(
    rt: Runtime, ctx: RequestContext, caller: Caller, slug: str, hook_id: str, delivery_id: str
) -> HookQueued:
    """Send a delivery again: the same delivery id and bytes, as a new attempt sequence."""
    from artemis.responses import HookQueued

    site = _gate(rt, caller, slug)
    _hook_id(hook_id)
    if not hook_events.is_delivery_id(delivery_id):
        raise DeliveryNotFound()
    dirname = rt.settings.key_layout.dirname(site)
    with _site_transaction(rt, site, "registry_write_failed", hook_id) as conn:
        found = hooks_db.redeliver(conn, site, dirname, hook_id, delivery_id)
    if not found:
        raise DeliveryNotFound()
    audit.record(rt, ctx, "site.hook.redeliver", site=site,
                 detail={"id": hook_id, "delivery": delivery_id})  # fmt: skip
    return HookQueued(deliveryId=delivery_id, status="queued")
