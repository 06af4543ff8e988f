"""Every route that changes what a site serves, or the index of what it holds, takes the site's
lock: with the lock held elsewhere each answers `409 site_locked` and changes nothing, and once
the lock is free the same request goes through. A route that stopped taking the lock would
go through at once, and fail here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from artemis.db.lock import site_lock
from artemis.keys import Dirname
from tests.integration.api.conftest import DEV, STAFF, Api

SITE = "www"
DIRNAME = Dirname("www.example.org")
OTHER = Dirname("other.example.org")


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    token: str
    body: dict[str, Any] | None = None


def _finalize(api: Api) -> Request:
    session = api.init(SITE)
    assert api.upload(session, "index.html", b"<h1>x</h1>").status == 200
    return Request("POST", f"/api/deploy/{session['deployId']}/finalize", session["jwt"],
                   {"mode": "production", "files": ["index.html"]})  # fmt: skip


def _promote(api: Api) -> Request:
    api.deploy(SITE, mode="production")
    target = api.deploy(SITE, mode="preview")
    return Request("POST", f"/api/site/{SITE}/promote", DEV, {"deployId": target})


def _rollback(api: Api) -> Request:
    first = api.deploy(SITE, mode="production")
    api.deploy(SITE, mode="production")
    return Request("POST", f"/api/site/{SITE}/rollback", DEV, {"to": first})


def _remove_preview(api: Api) -> Request:
    session = api.init(SITE)
    assert api.upload(session, "index.html", b"<h1>pr</h1>").status == 200
    reply = api.call("POST", f"/api/deploy/{session['deployId']}/finalize", token=session["jwt"],
                     json_body={"mode": "preview", "files": ["index.html"], "alias": "pr-7"})  # fmt: skip
    assert reply.status == 200, reply.raw
    return Request("DELETE", f"/api/site/{SITE}/previews/pr-7", DEV)


def _delete_deploy(api: Api) -> Request:
    api.deploy(SITE, mode="production")
    victim = api.deploy(SITE, mode="preview")
    api.deploy(SITE, mode="preview")  # the preview alias moves on: the victim is unaliased
    return Request("DELETE", f"/api/site/{SITE}/deploys/{victim}", DEV)


def _restore(api: Api) -> Request:
    request = _delete_deploy(api)
    assert api.call(request.method, request.path, token=request.token).status == 200
    deploy_id = request.path.rsplit("/", 1)[1]
    return Request("POST", f"/api/site/{SITE}/deploys/{deploy_id}/restore", DEV)


def _update_site(api: Api) -> Request:
    return Request("PATCH", f"/api/site/{SITE}", STAFF, {"teams": ["web", "staff"]})


def _delete_site(api: Api) -> Request:
    api.deploy(SITE, mode="production")
    return Request("DELETE", f"/api/site/{SITE}", STAFF)


ROUTES: dict[str, Callable[[Api], Request]] = {
    "finalize": _finalize,
    "promote": _promote,
    "rollback": _rollback,
    "remove_preview": _remove_preview,
    "delete_deploy": _delete_deploy,
    "restore": _restore,
    "update_site": _update_site,
    "delete_site": _delete_site,
}


def _state(api: Api) -> list[Any]:
    """What a refused request must leave as it was: the index, the aliases, the outbox and the
    registry row."""
    return [
        api.sql("SELECT id, state FROM deploys ORDER BY id"),
        api.sql("SELECT name, deploy_id FROM aliases ORDER BY name"),
        api.sql("SELECT count(*) FROM outbox"),
        api.sql("SELECT slug, teams FROM sites ORDER BY slug"),
        api.sql("SELECT id, move_state FROM tombstones ORDER BY id"),
    ]


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_the_route_takes_the_site_lock(api: Api, short_lock_wait: float, route: str) -> None:
    api.register(SITE, ["web"])
    request = ROUTES[route](api)
    before = _state(api)

    def send() -> Any:
        return api.call(request.method, request.path, token=request.token,
                        json_body=request.body)  # fmt: skip

    # Another site's lock is no obstacle; this site's is.
    with site_lock(api.database_url, OTHER), site_lock(api.database_url, DIRNAME):
        reply = send()
    assert (reply.status, reply.code) == (409, "site_locked"), reply.raw
    assert _state(api) == before
    reply = send()
    assert 200 <= reply.status < 300, reply.raw
    assert _state(api) != before
