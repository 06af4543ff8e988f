"""The GitHub App client of the repo-request queue: it creates the repositories users request.

An RS256 App JWT (PyJWT) (iss = GH_APP_ID, iat = now - 60 s, exp = iat + 600 s) buys an installation
token, cached until 60 s before it expires, in process and, when configured, in the shared
cache (Redis) so every Lambda environment reuses one token. Every other call uses that token.

Failures carry two texts: `user_message`, which may reach the client, and the internal detail,
which is only logged. Token minting, the existence check, transport and parse errors are
internal; a 5xx (or a transport failure) is transient. Calls share the REST client's pool of
keep-alive connections (`artemis.github_transport`) and its rules: no redirect is followed,
bodies are capped, every call is bounded by a timeout.
"""

from __future__ import annotations

import contextlib
import json
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
                                  internal=True, transient=resp.status >= 500)  # fmt: skip
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


def _epoch(rfc3339: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()
