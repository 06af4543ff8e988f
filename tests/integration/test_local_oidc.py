"""`make run`'s system: its fake GitHub is the OIDC issuer the API's settings name, so a token
minted at the fake (as a workflow asks Actions for one) verifies with those settings."""

import json
import os
import urllib.request
from pathlib import Path

from artemis.config import load_settings
from artemis.db.connection import Database
from artemis.oidc import OidcVerifier, replay_in_database
from artemis_local.runner import LocalSystem
from tests.conftest import base_env


def test_a_token_minted_at_the_local_issuer_verifies(
    tmp_path: Path, database_url: str, moto_url: str
) -> None:
    system = LocalSystem(
        state_dir=tmp_path, base_env=base_env(DATABASE_URL=database_url, AWS_ENDPOINT_URL=moto_url),
        port=0, workers=False,
    ).start()  # fmt: skip
    db = Database(database_url)
    try:
        assert system.github is not None
        settings = load_settings(os.environ)
        assert settings.gh_oidc_issuer == system.github.url
        request = urllib.request.Request(
            f"{settings.gh_oidc_issuer}/_oidc/token?audience={settings.gh_oidc_audience}",
            data=json.dumps({"repository": "freeCodeCamp/www"}).encode(),
            headers={"Authorization": "bearer local"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            token = json.load(answer)["value"]
        verifier = OidcVerifier(
            settings.gh_oidc_issuer, settings.gh_oidc_audience, remember=replay_in_database(db)
        )
        assert verifier.verify(token).repository == "freeCodeCamp/www"
    finally:
        db.close()
        system.stop()


def test_a_configured_issuer_is_kept(tmp_path: Path, database_url: str, moto_url: str) -> None:
    env = base_env(
        DATABASE_URL=database_url, AWS_ENDPOINT_URL=moto_url,
        GH_OIDC_ISSUER="https://token.actions.githubusercontent.com",
    )  # fmt: skip
    system = LocalSystem(state_dir=tmp_path, base_env=env, port=0, workers=False).start()
    try:
        assert system.env["GH_OIDC_ISSUER"] == "https://token.actions.githubusercontent.com"
    finally:
        system.stop()
