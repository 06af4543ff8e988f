"""Trusted publishing from GitHub Actions: a job granted `permissions: id-token: write` finds
`ACTIONS_ID_TOKEN_REQUEST_URL` and `ACTIONS_ID_TOKEN_REQUEST_TOKEN` in its environment, and
asks that URL (with the request token as bearer, the audience appended) for a short-lived OIDC
token naming the run: repository, workflow, ref, event. `artemis deploy` presents that token
to init when no ARTEMIS_TOKEN (or --token) is given; the site's trust rules decide.

GitHub's URL already carries a query (`?api-version=…`), so the audience is added to it, not
put after a second `?`.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Mapping

from artemis_cli.errors import CREDENTIALS, SERVER, CliError

URL_VARIABLE = "ACTIONS_ID_TOKEN_REQUEST_URL"
TOKEN_VARIABLE = "ACTIONS_ID_TOKEN_REQUEST_TOKEN"  # noqa: S105 (a variable's name)
AUDIENCE_VARIABLE = "ARTEMIS_OIDC_AUDIENCE"
DEFAULT_AUDIENCE = "artemis"  # the server's GH_OIDC_AUDIENCE default
TIMEOUT = 30.0


def available(environ: Mapping[str, str]) -> bool:
    """Whether this is a GitHub Actions job that may request an OIDC token."""
    return bool(environ.get(URL_VARIABLE) and environ.get(TOKEN_VARIABLE))


def request_url(base: str, audience: str) -> str:
    """`base` with `audience=` set in its query (replacing one already there)."""
    parts = urllib.parse.urlsplit(base)
    query = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query) if k != "audience"]
    query.append(("audience", audience))
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def request_token(environ: Mapping[str, str], *, timeout: float = TIMEOUT) -> str:
    """The job's OIDC token for Artemis's audience (ARTEMIS_OIDC_AUDIENCE, default `artemis`);
    CliError when the runner does not give one."""
    from artemis_cli.http import send  # the CLI's one HTTP transport

    base = environ[URL_VARIABLE]
    if urllib.parse.urlsplit(base).scheme not in ("http", "https"):
        raise CliError("oidc_request_failed", f"{URL_VARIABLE} is not an http(s) URL", CREDENTIALS)
    audience = environ.get(AUDIENCE_VARIABLE) or DEFAULT_AUDIENCE
    headers = {"Authorization": f"bearer {environ[TOKEN_VARIABLE]}", "Accept": "application/json"}
    try:
        reply = send("GET", request_url(base, audience), None, headers, timeout)
    except OSError as err:
        raise CliError("oidc_request_failed", f"requesting the OIDC token: {err}", SERVER) from None
    if reply.status != 200:
        raise CliError(
            "oidc_request_failed",
            f"the runner refused the OIDC token request (HTTP {reply.status}); does the job "
            "have `permissions: id-token: write`?",
            CREDENTIALS if reply.status in (401, 403) else SERVER,
        )
    try:
        value = json.loads(reply.body).get("value")
    except (ValueError, AttributeError):
        value = None
    if not isinstance(value, str) or not value:
        raise CliError("oidc_request_failed", "the runner's answer holds no token", SERVER)
    return value
