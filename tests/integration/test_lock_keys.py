"""Lock keys: each constructor keeps the text running instances lock on, so an instance of
the previous version and one of this version still exclude each other."""

import pytest

from artemis.db import deploy_lock
from artemis.db.connection import connect
from artemis.db.lock import LockKey, advisory_lock, site_lock
from artemis.errors import DeployBusy, SiteLocked
from artemis.keys import Dirname


def test_the_key_texts_are_the_ones_instances_already_lock_on() -> None:
    assert LockKey.site(Dirname("www.example.org")).text == "www.example.org"
    assert LockKey.repo_request("42").text == "repo-request:42"
    assert LockKey.deploy(Dirname("www.example.org"), "x").text == "deploy:www.example.org/x"


def test_a_repo_request_lock_excludes_the_previous_versions_fake_site_name(
    database_url: str,
) -> None:
    # The previous version locked a repo request as the site named `repo-request:<id>`.
    with advisory_lock(database_url, LockKey.repo_request("42")):
        fake_site = Dirname("repo-request:42")
        with pytest.raises(SiteLocked), site_lock(database_url, fake_site, timeout=0.2):
            pass
        with advisory_lock(database_url, LockKey.repo_request("43"), timeout=0.2):
            pass  # another request is another key


def test_a_deploy_lock_is_keyed_by_lock_key_deploy(database_url: str) -> None:
    site = Dirname("www.example.org")
    with advisory_lock(database_url, LockKey.deploy(site, "20260101-000000-abc")):
        with connect(database_url) as conn, conn.transaction(), pytest.raises(DeployBusy):
            deploy_lock.hold(conn, site, "20260101-000000-abc", wait=0.2)
        with site_lock(database_url, site, timeout=0.2):
            pass  # the site's own key is a different lock
