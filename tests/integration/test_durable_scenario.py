"""Issue 4's scenario end to end, one store state through every job: twelve finalized deploys,
keep 3, cap 10, production on the 5th-newest, the clock past grace and retention → gc-site
tombstones exactly the expected deploys; a purge past the recovery window deletes their bytes,
then their rows; a drift sweep finds nothing; a planted orphan is reported and left alone;
reconcile --apply repairs it; the next sweep is clean."""

from datetime import timedelta

from artemis.db import sites, tombstones
from artemis.deadlines import Deadline
from artemis.jobs.drift import run_drift
from artemis.jobs.purge import run_tombstone_purge
from artemis.jobs.reconcile import run_reconcile
from artemis.keys import Slug
from artemis.runtime import Runtime
from tests.integration.test_gc_site import (  # noqa: F401 - fixtures used by name
    NOW,
    SITE,
    SLUG,
    T0,
    deploy_id,
    expected_victims,
    keys_under,
    make_rt,
    rt,
    run,
    seed_twelve,
)


def test_twelve_deploys_through_gc_purge_drift_and_reconcile(rt: Runtime) -> None:  # noqa: F811
    with rt.db.transaction() as conn:
        sites.insert(conn, Slug(SLUG), ["web"], "scenario")
    ids, _ = seed_twelve(rt)
    victims = expected_victims(ids)
    layout = rt.settings.key_layout

    gc = run(rt)  # the site.changed event's run
    assert set(gc.tombstoned) == victims and ids[-5] not in gc.tombstoned
    for did in victims:
        assert keys_under(rt, layout.deploy_trash_prefix(SITE, did))
        assert not keys_under(rt, layout.deploy_prefix(SITE, did))

    later = NOW + timedelta(days=rt.settings.cleanup_recovery_days + 1)
    with rt.db.transaction() as conn:  # the tombstones were stamped by the database clock
        conn.execute("UPDATE tombstones SET trashed_at = %s", [NOW])
    purge = run_tombstone_purge(rt, now=later, deadline=Deadline.after(600))
    assert set(purge.purged) == {f"{SITE}/{did}" for did in victims}
    for did in victims:
        assert not keys_under(rt, layout.deploy_trash_prefix(SITE, did))
    with rt.db.transaction() as conn:
        assert tombstones.for_site(conn, SITE) == []

    clean = run_drift(rt, now=later, deadline=Deadline.after(600), fresh=True)
    assert clean.verdict == "clean" and clean.sites == [] and not clean.selfcheck

    orphan = deploy_id(T0 - timedelta(days=3), "orphan1")  # bytes no write path produced
    rt.bucket.put(layout.deploy_prefix(SITE, orphan) + "index.html", b"stray", "text/html")
    found = run_drift(rt, now=later, deadline=Deadline.after(600), fresh=True)
    (finding,) = found.sites
    assert finding.site == SITE and finding.classification.tombstone == (orphan,)
    assert keys_under(rt, layout.deploy_prefix(SITE, orphan))  # the sweep only reports

    repaired = run_reconcile(rt, SLUG, apply=True, now=later, deadline=Deadline.after(600))
    assert repaired.complete
    assert not keys_under(rt, layout.deploy_prefix(SITE, orphan))
    assert keys_under(rt, layout.deploy_trash_prefix(SITE, orphan))
    after = run_drift(rt, now=later, deadline=Deadline.after(600), fresh=True)
    assert after.verdict == "clean" and after.sites == []
