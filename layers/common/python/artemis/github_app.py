"""The GitHub App client of the repo-request queue: it creates the repositories users request.

An RS256 App JWT (PyJWT) (iss = GH_APP_ID, iat = now - 60 s, exp = iat + 600 s) buys an installation
token, cached until 60 s before it expires, in process and, when configured, in the shared
cache (Redis) so every Lambda environment reuses one token. Every other call uses that token.

Failures carry two texts: `user_message`, which may reach the client, and the internal detail,
which is only logged. Token minting, the existence check, transport and parse errors are
internal; a 5xx (or a transport failure) is transient. Calls share the REST client's pool of
keep-alive connections (`artemis.github_transport`) and its rules: no redirect is followed,
bodies are capped, every call is bounded by a timeout.

The same installation also records GitHub deployments (`create_deployment`) and their statuses
(`post_deployment_status`) on the repositories sites deploy from; their failures are
`DeploymentError`s, transient or permanent.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from artemis.deadlines import Deadline
from artemis.github import SharedCache
from artemis.github_transport import (
    GitHubTransport,
    Response,
    TransportError,
    quote,
    shared_transport,
)

TIMEOUT_SECONDS = 15.0
TOKEN_MARGIN_SECONDS = 60
TEMPLATE_TTL_SECONDS = 300
TEMPLATE_MAX_PAGES = 20
GENERIC_FAILURE = "repository creation failed"
DEPLOYMENT_STATES = frozenset(
    {"success", "inactive", "failure", "error", "in_progress", "queued", "pending"}
)
STATUS_DESCRIPTION_MAX = 140  # GitHub's limit on a deployment status's description
ENVIRONMENT_MAX = 255  # GitHub's limit on an environment's name
DETAIL_MAX = 300
_REPO = re.compile(r"([A-Za-z0-9][A-Za-z0-9_.-]{0,38})/([A-Za-z0-9_.-]{1,100})")
_SHA = re.compile(r"[0-9a-fA-F]{7,40}")


class RepoCreateError(Exception):
    """A creation that did not happen. `user_message` is safe to show; `str(self)` is the
    internal detail."""

    def __init__(
        self, user_message: str, detail: str = "", *, transient: bool = False,
        internal: bool = False, existing_url: str = "",
    ) -> None:  # fmt: skip
        super().__init__(detail or user_message)
        self.user_message = user_message
        self.transient = transient
        self.internal = internal
        self.existing_url = existing_url

    @property
    def already_exists(self) -> bool:
        return bool(self.existing_url)


class DeploymentError(Exception):
    """A deployment or deployment status GitHub did not record. `transient` (a transport
    failure, a 5xx, throttling, a stale token, the time budget spent): the same call may succeed
    later. Permanent (404: the App cannot see the repository; 422: e.g. the sha is not in it;
    403: a missing permission; 409; an unreadable answer): retrying changes nothing. `detail`
    is a short internal text, for logs."""

    def __init__(self, detail: str, *, transient: bool) -> None:
        detail = detail if len(detail) <= DETAIL_MAX else detail[: DETAIL_MAX - 1] + "…"
        super().__init__(detail)
        self.detail = detail
        self.transient = transient


def load_private_key(pem: str) -> Any:
    """The App's RSA key from a PKCS#1 or PKCS#8 PEM; ValueError otherwise."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    try:
        key = serialization.load_pem_private_key(pem.strip().encode(), password=None)
    except (ValueError, TypeError) as err:
        raise ValueError(f"not a readable unencrypted PEM private key ({err})") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("not an RSA key")
    return key


def app_jwt(app_id: str, key: Any, now: float) -> str:
    """The App's RS256 JWT: issued a minute in the past (GitHub's clock may be behind ours),
    valid for ten minutes, GitHub's longest."""
    import jwt  # imported with the feature only: PyJWT loads cryptography's X.509 modules

    iat = int(now) - 60
    return jwt.encode({"iss": app_id, "iat": iat, "exp": iat + 600}, key, algorithm="RS256")


class GitHubApp:
    def __init__(
        self, base_url: str, app_id: str, installation_id: str, private_key: Any, org: str,
        *, shared: SharedCache | None = None, timeout: float = TIMEOUT_SECONDS,
        clock: Callable[[], float] = time.time, transport: GitHubTransport | None = None,
    ) -> None:  # fmt: skip
        self.base_url = base_url.rstrip("/")
        self.app_id = app_id
        self.installation_id = installation_id
        self.org = org
        self._key = private_key  # as load_private_key read it
        self._shared = shared
        self._timeout = timeout
        self._clock = clock
        self._transport = transport or shared_transport()
        self._lock = threading.Lock()
        self._token: tuple[str, float] | None = None  # (token, use until)
        self._templates: tuple[list[str], float] | None = None

    # --- tokens ---------------------------------------------------------------------------
    @property
    def _shared_key(self) -> str:
        return f"ghapp:token:{self.app_id}:{self.installation_id}"

    def installation_token(self, deadline: Deadline | None = None) -> str:
        now = self._clock()
        with self._lock:
            if self._token and self._token[1] > now:
                return self._token[0]
        shared = self._shared_read()
        if shared is not None:
            return shared
        resp = self._send(
            "POST", f"/app/installations/{quote(self.installation_id)}/access_tokens",
            auth=f"Bearer {app_jwt(self.app_id, self._key, now)}", deadline=deadline,
        )  # fmt: skip
        if resp.status not in (200, 201):
            raise RepoCreateError(GENERIC_FAILURE, f"installation token: HTTP {resp.status}",
                                  internal=True,
                                  transient=resp.status >= 500 or resp.throttled)  # fmt: skip
        try:
            body = resp.json()
            token = str(body["token"])
            expires = _epoch(str(body["expires_at"]))
        except (ValueError, KeyError, TypeError) as err:
            raise RepoCreateError(GENERIC_FAILURE, f"installation token: {err}",
                                  internal=True) from None  # fmt: skip
        use_until = expires - TOKEN_MARGIN_SECONDS
        with self._lock:
            self._token = (token, use_until)
        ttl = int(use_until - now)
        if self._shared is not None and ttl > 0:
            # A shared-cache failure only costs another environment a token of its own.
            with contextlib.suppress(Exception):
                self._shared.set(self._shared_key, json.dumps([token, use_until]), ttl)
        return token

    def _shared_read(self) -> str | None:
        if self._shared is None:
            return None
        try:
            raw = self._shared.get(self._shared_key)
            if raw is None:
                return None
            token, use_until = json.loads(raw)
        except Exception:
            return None
        if float(use_until) <= self._clock():
            return None
        with self._lock:
            self._token = (str(token), float(use_until))
        return str(token)

    # --- repositories ---------------------------------------------------------------------
    def repo_url(self, name: str, deadline: Deadline | None = None) -> str | None:
        """The repo's html_url if it exists, None if GitHub answers 404; RepoCreateError
        (internal) for anything else."""
        resp = self._call("GET", f"/repos/{quote(self.org)}/{quote(name)}", deadline=deadline)
        if resp.status == 404:
            return None
        if resp.status != 200:
            raise RepoCreateError(GENERIC_FAILURE, f"existence check: HTTP {resp.status}",
                                  internal=True, transient=resp.status >= 500)  # fmt: skip
        try:
            return str(resp.json()["html_url"])
        except (ValueError, KeyError, TypeError) as err:
            raise RepoCreateError(GENERIC_FAILURE, f"existence check: {err}",
                                  internal=True) from None  # fmt: skip

    def create(
        self, name: str, *, description: str, private: bool, template: str,
        deadline: Deadline | None = None,
    ) -> str:  # fmt: skip
        """Create the repo (blank or from `template`); its html_url. An existing repo is an
        "already exists" failure carrying its URL. `deadline` bounds every call; past it the
        creation is a transient failure."""
        existing = self.repo_url(name, deadline)
        if existing is not None:
            raise RepoCreateError(f"repository {self.org}/{name} already exists",
                                  existing_url=existing)  # fmt: skip
        if template:
            resp = self._call(
                "POST", f"/repos/{quote(self.org)}/{quote(template)}/generate",
                {"owner": self.org, "name": name, "description": description, "private": private,
                 "include_all_branches": False}, deadline=deadline,
            )  # fmt: skip
        else:
            resp = self._call(
                "POST", f"/orgs/{quote(self.org)}/repos",
                {"name": name, "description": description, "private": private,
                 "auto_init": False, "has_issues": True, "has_projects": False,
                 "has_wiki": False, "delete_branch_on_merge": True}, deadline=deadline,
            )  # fmt: skip
        if resp.status != 201:
            raise _creation_failure(resp, bool(template))
        try:
            url = str(resp.json()["html_url"])
        except (ValueError, KeyError, TypeError) as err:
            raise RepoCreateError(GENERIC_FAILURE, f"create answer: {err}",
                                  internal=True) from None  # fmt: skip
        if private:
            self._disable_actions(name, deadline)
        return url

    def _disable_actions(self, name: str, deadline: Deadline | None) -> None:
        try:
            path = f"/repos/{quote(self.org)}/{quote(name)}/actions/permissions"
            resp = self._call("PUT", path, {"enabled": False}, deadline=deadline)
            ok = resp.status in (200, 204)
        except RepoCreateError:
            ok = False
        if not ok:
            from artemis.observability import logger

            logger.warning("repo.actions_disable_failed", extra={"repo": name})

    def templates(self) -> list[str]:
        """Template repos the App can read, sorted; cached 5 minutes; [] on any failure."""
        now = self._clock()
        if self._templates and self._templates[1] > now:
            return list(self._templates[0])
        try:
            names = self._list_templates()
        except Exception:
            from artemis.observability import logger

            logger.warning("repo.templates_failed", exc_info=True)
            return []
        self._templates = (names, now + TEMPLATE_TTL_SECONDS)
        return list(names)

    def _list_templates(self) -> list[str]:
        found: list[str] = []
        for page in range(1, TEMPLATE_MAX_PAGES + 1):
            resp = self._call(
                "GET", f"/orgs/{quote(self.org)}/repos?type=all&per_page=100&page={page}"
            )
            if resp.status != 200:
                raise RepoCreateError(GENERIC_FAILURE, f"template list: HTTP {resp.status}")
            repos = resp.json()
            found += [str(r["name"]) for r in repos if r.get("is_template")]
            if len(repos) < 100:
                break
        org = quote(self.org)
        readable = [
            name for name in found
            if 200 <= self._call("GET", f"/repos/{org}/{quote(name)}/contents/").status < 300
        ]  # fmt: skip
        return sorted(readable)

    # --- deployments ----------------------------------------------------------------------
    def create_deployment(
        self, repo: str, sha: str, environment: str, *, description: str, transient: bool,
        production: bool, deadline: Deadline | None = None,
    ) -> int:  # fmt: skip
        """Record a deployment of `sha` to `environment` on `repo` ("owner/name"); its id.
        GitHub merges nothing (`auto_merge` off) and waits on no status check
        (`required_contexts` empty). ValueError for a malformed argument (nothing is sent);
        DeploymentError for anything GitHub did not record."""
        owner, name = _split_repo(repo)
        if not isinstance(sha, str) or not _SHA.fullmatch(sha):
            raise ValueError(f"sha must be 7 to 40 hexadecimal characters, not {sha!r}")
        _check_environment(environment)
        body = {
            "ref": sha, "environment": environment, "auto_merge": False, "required_contexts": [],
            "transient_environment": bool(transient), "production_environment": bool(production),
            "description": str(description),
        }  # fmt: skip
        path = f"/repos/{quote(owner)}/{quote(name)}/deployments"
        resp = self._deployment_call("create deployment", path, body, deadline)
        if resp.status != 201:
            raise _deployment_failure("create deployment", resp)
        try:
            deployment_id = resp.json()["id"]
        except (ValueError, KeyError, TypeError) as err:
            raise DeploymentError(f"create deployment: unreadable answer ({err!r})",
                                  transient=False) from None  # fmt: skip
        if not _is_id(deployment_id):
            raise DeploymentError(f"create deployment: unreadable id {deployment_id!r}",
                                  transient=False)  # fmt: skip
        return int(deployment_id)

    def post_deployment_status(
        self, repo: str, deployment_id: int, state: str, *, environment_url: str | None = None,
        log_url: str | None = None, description: str = "", deadline: Deadline | None = None,
    ) -> None:  # fmt: skip
        """Add a status to deployment `deployment_id` of `repo`. GitHub's `auto_inactive` is
        off: the caller marks superseded deployments `inactive` itself. A description longer
        than GitHub's 140 characters is cut. ValueError for a malformed argument (nothing is
        sent); DeploymentError for anything GitHub did not record."""
        owner, name = _split_repo(repo)
        if not _is_id(deployment_id):
            raise ValueError(f"deployment_id must be a positive integer, not {deployment_id!r}")
        if state not in DEPLOYMENT_STATES:
            raise ValueError(f"state must be one of {sorted(DEPLOYMENT_STATES)}, not {state!r}")
        for label, url in (("environment_url", environment_url), ("log_url", log_url)):
            if url is not None and not (
                isinstance(url, str) and url.startswith(("https://", "http://"))
            ):
                raise ValueError(f"{label} must be an http(s) URL, not {url!r}")
        if len(description) > STATUS_DESCRIPTION_MAX:
            description = description[: STATUS_DESCRIPTION_MAX - 1] + "…"
        body: dict[str, Any] = {"state": state, "description": description,
                                "auto_inactive": False}  # fmt: skip
        if environment_url is not None:
            body["environment_url"] = environment_url
        if log_url is not None:
            body["log_url"] = log_url
        path = f"/repos/{quote(owner)}/{quote(name)}/deployments/{deployment_id}/statuses"
        resp = self._deployment_call("deployment status", path, body, deadline)
        if not 200 <= resp.status < 300:
            raise _deployment_failure("deployment status", resp)

    def _deployment_call(
        self, what: str, path: str, body: Any, deadline: Deadline | None
    ) -> Response:
        """POST `body` with the installation token; the token's and the transport's failures
        as DeploymentError. A 401 means the cached token is no longer good: it is forgotten,
        so the retry the transient failure invites mints a new one."""
        try:
            token = self.installation_token(deadline)
            resp = self._send("POST", path, auth=f"token {token}", body=body, deadline=deadline)
        except RepoCreateError as err:
            raise DeploymentError(f"{what}: {err}", transient=err.transient) from err
        if resp.status == 401:
            self._forget_token(token)
        return resp

    def _forget_token(self, token: str) -> None:
        with self._lock:
            if self._token and self._token[0] == token:
                self._token = None
        if self._shared is not None:
            with contextlib.suppress(Exception):
                raw = self._shared.get(self._shared_key)
                if raw is not None and json.loads(raw)[0] == token:
                    # an expired record: every reader takes it for a miss
                    self._shared.set(self._shared_key, json.dumps([token, 0]), 1)

    # --- HTTP -----------------------------------------------------------------------------
    def _call(
        self, method: str, path: str, body: Any = None, *, deadline: Deadline | None = None
    ) -> Response:
        token = self.installation_token(deadline)
        return self._send(method, path, auth=f"token {token}", body=body, deadline=deadline)

    def _send(
        self, method: str, path: str, *, auth: str, body: Any = None,
        deadline: Deadline | None = None,
    ) -> Response:  # fmt: skip
        timeout = self._timeout
        if deadline is not None:
            timeout = min(timeout, deadline.remaining())
            if timeout <= 0:
                raise RepoCreateError("GitHub is temporarily unavailable, retry",
                                      "the time budget is spent", transient=True,
                                      internal=True)  # fmt: skip
        try:
            return self._transport.request(method, self.base_url + path, auth, timeout, body)
        except TransportError as exc:
            raise RepoCreateError(
                "GitHub is temporarily unavailable, retry", f"{method} {path}: {exc}",
                transient=True, internal=True,
            ) from exc  # fmt: skip


def _creation_failure(resp: Response, from_template: bool) -> RepoCreateError:
    """The user-facing message for a non-201 creation answer: what the user or an admin can act
    on (an unreadable template, a missing permission), else GitHub's own message."""
    try:
        message = str(resp.json().get("message") or "")
    except (ValueError, AttributeError):
        message = ""
    detail = f"create: HTTP {resp.status} {message}".strip()
    if resp.status == 422 and from_template and "could not clone" in message.lower():
        return RepoCreateError("the GitHub App cannot read the template repository", detail)
    if resp.status == 403:
        text = "the GitHub App lacks permission to create the repository"
        return RepoCreateError(f"{text}: {message}" if message else text, detail)
    if resp.status >= 500:
        return RepoCreateError("GitHub is temporarily unavailable, retry", detail, transient=True)
    text = f"GitHub API error ({resp.status})"
    return RepoCreateError(f"{text}: {message}" if message else text, detail)


def _split_repo(repo: str) -> tuple[str, str]:
    match = _REPO.fullmatch(repo) if isinstance(repo, str) else None
    if match is None or match.group(2) in (".", ".."):
        raise ValueError(f"repo must be owner/name, not {repo!r}")
    return match.group(1), match.group(2)


def _check_environment(environment: str) -> None:
    if (
        not isinstance(environment, str) or not environment.strip()
        or len(environment) > ENVIRONMENT_MAX or not environment.isprintable()
    ):  # fmt: skip
        raise ValueError(f"environment must be a printable name of 1 to 255 characters, "
                         f"not {environment!r}")  # fmt: skip


def _is_id(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _deployment_failure(what: str, resp: Response) -> DeploymentError:
    """A non-success answer: throttling, a 5xx and a 401 (a stale token) are transient; the
    rest (404 unseen repository, 422 refused, 403 missing permission, 409, a redirect...) are
    permanent."""
    try:
        message = str(resp.json().get("message") or "")
    except (ValueError, AttributeError):
        message = ""
    if resp.throttled:
        reason = "rate limited"
    else:
        reason = {
            401: "installation token refused",
            403: "the GitHub App lacks permission",
            404: "the GitHub App cannot see the repository",
            409: "conflict",
            422: "GitHub refused it",
        }.get(resp.status, "unexpected answer")
    detail = f"{what}: HTTP {resp.status} {reason}" + (f": {message}" if message else "")
    transient = resp.throttled or resp.status >= 500 or resp.status == 401
    return DeploymentError(detail, transient=transient)


def _epoch(rfc3339: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()
