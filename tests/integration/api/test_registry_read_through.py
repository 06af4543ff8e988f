"""A registry change made in one execution environment is honoured at once by another whose
snapshot is older: a gate the snapshot does not grant reads the slug through to Postgres before
refusing. The read-through is single-flight per slug and rate-bounded; what the snapshot grants
stays granted until its next rebuild (the documented bound for a removed team).

Two runtimes on one database: the gateway's (the process runtime, environment A) and a second
`Runtime` built from the same settings (environment B, its own pool and snapshot)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from artemis.db.registry_snapshot import (
    READ_THROUGH_BURST,
    READ_THROUGH_PER_SECOND,
    READ_THROUGH_QUIET_SECONDS,
    SNAPSHOT_MAX_AGE_SECONDS,
    RegistrySnapshot,
)
from artemis.runtime import Runtime
from artemis.services import deploys, registry
from artemis.services.context import Caller, RequestContext
from tests.integration.api.conftest import DEV, STAFF, Api, Reply

STAFF_CALLER = Caller("local-staff", STAFF)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def other(api: Api) -> Iterator[Runtime]:
    """Environment B: another runtime on the same database."""
    rt = Runtime(api.rt.settings)
    try:
        yield rt
    finally:
        rt.close()


def init(api: Api, site: str, token: str = DEV) -> Reply:
    return api.call(
        "POST", "/api/deploy/init", token=token, json_body={"site": site, "sha": "abc1234"}
    )


def register_in(rt: Runtime, slug: str, teams: list[str]) -> None:
    body = f'{{"slug": "{slug}", "teams": {teams!r}}}'.replace("'", '"').encode()
    registry.register(rt, RequestContext("b" * 24, STAFF_CALLER), STAFF_CALLER, body)


def patch_in(rt: Runtime, slug: str, teams: list[str]) -> None:
    body = f'{{"teams": {teams!r}}}'.replace("'", '"').encode()
    registry.update(rt, RequestContext("b" * 24, STAFF_CALLER), STAFF_CALLER, slug, body)


def test_a_site_registered_in_another_environment_deploys_at_once(api: Api, other: Runtime) -> None:
    api.rt.__dict__["snapshot"] = RegistrySnapshot(api.rt.db, clock=Clock())  # never ages
    assert api.rt.snapshot.all() == {}  # A's snapshot is built, without www
    register_in(other, "www", ["web"])  # CI registers through environment B …
    reply = init(api, "www")  # … and deploys through A, whose snapshot is not due for 60 s
    assert reply.status == 200, reply.raw
    assert api.rt.snapshot.teams("www") == ["web"]  # the read-through updated A's entry


def test_a_team_added_in_another_environment_is_honoured_at_once(api: Api, other: Runtime) -> None:
    clock = Clock()
    api.rt.__dict__["snapshot"] = RegistrySnapshot(api.rt.db, clock=clock)
    register_in(other, "www", ["staff"])
    assert init(api, "www").code == "user_unauthorized"  # DEV is in team web only
    patch_in(other, "www", ["staff", "web"])
    clock.now += READ_THROUGH_QUIET_SECONDS  # that refusal's read is no longer recent
    reply = init(api, "www")
    assert reply.status == 200, reply.raw


def test_a_deploy_session_granted_by_a_team_added_elsewhere_is_accepted(
    api: Api, other: Runtime
) -> None:
    """Session routes check the granting team against the registry: a session B minted for a
    team B just added is accepted by A, although A's snapshot predates the change."""
    api.rt.__dict__["snapshot"] = RegistrySnapshot(api.rt.db, clock=Clock())
    register_in(other, "www", ["staff"])
    assert init(api, "www", token=STAFF).status == 200  # A's snapshot: www → [staff]
    patch_in(other, "www", ["web"])
    dev = Caller("local-dev", DEV)
    session = deploys.init(
        other, RequestContext("c" * 24, dev), dev, b'{"site": "www", "sha": "abc1234"}'
    ).model_dump(mode="json")
    upload = api.call(
        "PUT", f"/api/deploy/{session['deployId']}/upload?path=index.html",
        token=session["jwt"], body=b"<h1>hi</h1>", headers={"Content-Type": "text/html"},
    )  # fmt: skip
    assert upload.status == 200, upload.raw


def test_a_removed_team_stops_working_within_the_snapshot_age(api: Api, other: Runtime) -> None:
    clock = Clock()
    api.rt.__dict__["snapshot"] = RegistrySnapshot(api.rt.db, clock=clock)
    register_in(other, "www", ["web"])
    assert init(api, "www").status == 200
    patch_in(other, "www", ["staff"])  # B removes team web
    clock.now += SNAPSHOT_MAX_AGE_SECONDS - 1
    assert init(api, "www").status == 200  # still within the documented bound in A
    clock.now += 1
    assert init(api, "www").code == "user_unauthorized"


def test_concurrent_misses_for_one_slug_make_one_query(api: Api) -> None:
    entered = threading.Condition()
    calls = {"n": 0}
    snapshot = RegistrySnapshot(api.rt.db, clock=Clock())
    original: Callable[..., Any] = snapshot._flight.do

    def counted(key: Any, fn: Callable[[], Any]) -> Any:
        with entered:
            calls["n"] += 1
            entered.notify_all()
        return original(key, fn)

    snapshot._flight.do = counted  # type: ignore[method-assign]
    assert snapshot.teams("www") == []  # built while www is unknown
    api.sql("INSERT INTO sites (slug, teams, created_by) VALUES ('www', '{web}', 'b')")
    results: list[list[str]] = []
    with psycopg.connect(api.database_url) as blocker:
        # The leader's query waits behind this lock until every caller has joined the flight.
        blocker.execute("LOCK TABLE sites IN ACCESS EXCLUSIVE MODE")
        threads = [
            threading.Thread(target=lambda: results.append(snapshot.read_through("www")))
            for _ in range(8)
        ]
        for thread in threads:
            thread.start()
        with entered:
            assert entered.wait_for(lambda: calls["n"] == 8, timeout=30)
        blocker.rollback()
    for thread in threads:
        thread.join(30)
    assert results == [["web"]] * 8
    assert snapshot.read_throughs == 1


def test_a_flood_of_unknown_slugs_makes_a_bounded_number_of_queries(api: Api) -> None:
    clock = Clock()
    snapshot = RegistrySnapshot(api.rt.db, clock=clock)
    api.sql("INSERT INTO sites (slug, teams, created_by) VALUES ('www', '{web}', 'b')")
    snapshot.invalidate()
    assert snapshot.teams("www") == ["web"]
    for n in range(READ_THROUGH_BURST * 5):
        assert snapshot.read_through(f"ghost-{n}") == []
    assert snapshot.read_throughs == READ_THROUGH_BURST
    api.sql("INSERT INTO sites (slug, teams, created_by) VALUES ('late', '{web}', 'b')")
    assert snapshot.read_through("late") == []  # over the bound: refused from the snapshot
    clock.now += 1
    for n in range(100):
        snapshot.read_through(f"again-{n}")
    assert snapshot.read_throughs == READ_THROUGH_BURST + int(READ_THROUGH_PER_SECOND)
    clock.now += 1
    assert snapshot.read_through("late") == ["web"]  # the bound refills: a real site is found


def test_one_slug_is_read_at_most_once_per_quiet_window(api: Api) -> None:
    clock = Clock()
    snapshot = RegistrySnapshot(api.rt.db, clock=clock)
    for _ in range(10):
        assert snapshot.read_through("ghost") == []
    assert snapshot.read_throughs == 1
    api.sql("INSERT INTO sites (slug, teams, created_by) VALUES ('ghost', '{web}', 'b')")
    clock.now += READ_THROUGH_QUIET_SECONDS
    assert snapshot.read_through("ghost") == ["web"]
    assert snapshot.read_throughs == 2
    assert snapshot.teams("ghost") == ["web"]


def test_a_name_that_cannot_be_a_slug_is_refused_without_a_query(api: Api) -> None:
    snapshot = RegistrySnapshot(api.rt.db, clock=Clock())
    for name in ("has\x00nul", "UPPER", "-dash", "x" * 300):
        assert snapshot.read_through(name) == []
    assert snapshot.read_throughs == 0
    reply = api.call("POST", "/api/deploy/init", token=DEV,
                     json_body={"site": "a\u0000b", "sha": "abc1234"})  # fmt: skip
    assert reply.status == 403 and reply.code == "site_unauthorized", reply.raw
