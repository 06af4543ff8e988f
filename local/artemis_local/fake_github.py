"""A fake GitHub REST API for the endpoints Artemis calls, with GitHub's status codes and
error bodies. Identities and team memberships come from a YAML file (identities.yaml); tests may
add identities (`fake.directory.identities[token] = Identity(...)`), override a membership's
state (`set_membership_state`), inject faults (`fail`, `disconnect`) and slow answers (`delay`).

Routes: `GET /user`; `GET /user/teams` (paged by `per_page`, default 30, at most 100, and
`page`, from 1); `GET /orgs/{org}/teams/{team}/memberships/{login}`. With `app` set (a
`FakeApp`), the GitHub App endpoints of the repo-request feature and of deployments (and
their statuses) too; see `FakeApp`. Always, a
GitHub Actions OIDC issuer at the fake's URL (`oidc`, a `FakeOidcIssuer`): its discovery
document, its JWKS, and a mint endpoint (`/_oidc/token`) that stands in for a workflow's
`ACTIONS_ID_TOKEN_REQUEST_URL`."""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

DEFAULT_IDENTITIES = Path(__file__).with_name("identities.yaml")
_DOCS = "https://docs.github.com/rest"
_MEMBERSHIP = re.compile(r"^/orgs/([^/]+)/teams/([^/]+)/memberships/([^/]+)$")


@dataclass(frozen=True)
class Identity:
    token: str
    login: str
    id: int
    teams: tuple[str, ...] = ()


@dataclass
class Directory:
    orgs: tuple[str, ...]
    identities: dict[str, Identity] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path = DEFAULT_IDENTITIES) -> Directory:
        data = yaml.safe_load(path.read_text()) or {}
        identities = {
            str(item["token"]): Identity(
                token=str(item["token"]),
                login=str(item["login"]),
                id=int(item["id"]),
                teams=tuple(str(t) for t in item.get("teams") or ()),
            )
            for item in data.get("identities") or []
        }
        return cls(orgs=tuple(data.get("orgs") or ()), identities=identities)

    def by_login(self, login: str) -> Identity | None:
        return next((i for i in self.identities.values() if i.login.lower() == login.lower()), None)


def _matches(pattern: str, target: str, exact: bool) -> bool:
    """`exact`: the target's path (query dropped) equals `pattern`; else the whole target
    (path and query) starts with `pattern`."""
    if exact:
        return target.split("?", 1)[0] == pattern
    return target.startswith(pattern)


@dataclass
class Fault:
    """An injected answer. `status` 0 closes the connection without answering."""

    path: str
    status: int
    headers: dict[str, str]
    body: str | None
    times: int | None  # answers left; None = until cleared
    exact: bool = False


@dataclass(frozen=True)
class Delay:
    path: str
    seconds: float
    exact: bool = False


class FakeGitHub:
    """Serve the directory on 127.0.0.1:port (0 = a free port) until `stop()`."""

    def __init__(
        self, directory: Directory | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.directory = directory or Directory.load()
        self.requests: list[tuple[str, str]] = []  # (method, target), for tests that count calls
        self.request_headers: list[dict[str, str]] = []  # per request, names lower-cased
        self.connections = 0  # TCP connections accepted, for tests of connection reuse
        # (team, login), lower-cased → membership state answered with 200 (e.g. "pending")
        self.membership_states: dict[tuple[str, str], str] = {}
        self._faults: list[Fault] = []
        self._delays: list[Delay] = []
        self.app: FakeApp | None = None  # the GitHub App endpoints, when enabled
        self.oidc = FakeOidcIssuer(lambda: self.url)
        self._lock = threading.Lock()
        fake = self

        class RequestHandler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: one connection serves many requests

            def setup(self) -> None:
                super().setup()
                with fake._lock:
                    fake.connections += 1

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

            def do_PUT(self) -> None:
                self._serve("PUT")

            def _serve(self, method: str) -> None:
                length = int(self.headers.get("content-length") or 0)
                sent = self.rfile.read(length) if length else b""
                with fake._lock:
                    fake.requests.append((method, self.path))
                    fake.request_headers.append({k.lower(): v for k, v in self.headers.items()})
                fake._wait(self.path)
                fault = fake._take_fault(self.path)
                headers: dict[str, str] = {}
                if fault is None:
                    authorization = self.headers.get("authorization", "")
                    if fake.oidc.handles(self.path):
                        status, body = fake.oidc.route(method, self.path, authorization, sent)
                    elif fake.app is not None and fake.app.handles(self.path):
                        status, body = fake.app.route(method, self.path, authorization, sent)
                    else:
                        status, body = fake.route(self.path, authorization)
                    raw = json.dumps(body).encode()
                elif fault.status == 0:
                    self.close_connection = True
                    return
                else:
                    status, headers = fault.status, fault.headers
                    raw = (
                        fault.body.encode()
                        if fault.body is not None
                        else json.dumps(
                            {"message": _reason(status), "documentation_url": _DOCS}
                        ).encode()
                    )
                bodiless = status in (204, 304)  # HTTP forbids a body: the next answer would
                # start inside it on a kept-alive connection
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json; charset=utf-8")
                    if not bodiless:
                        self.send_header("Content-Length", str(len(raw)))
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    if not bodiless:
                        self.wfile.write(raw)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True  # the client gave up (a timeout test)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer((host, port), RequestHandler)
        self.server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    # --- test controls ------------------------------------------------------------------

    def fail(
        self,
        path_prefix: str,
        status: int,
        headers: dict[str, str] | None = None,
        body: str | None = None,
        times: int | None = None,
        *,
        exact: bool = False,
    ) -> Fault:
        """Answer matching requests with `status`, `headers` and `body` (default: GitHub's JSON
        error body) for the next `times` matches (None: until `clear_faults`). The newest
        matching fault wins. See `_matches` for `exact`."""
        fault = Fault(path_prefix, status, dict(headers or {}), body, times, exact)
        with self._lock:
            self._faults.insert(0, fault)
        return fault

    def disconnect(
        self, path_prefix: str, times: int | None = None, *, exact: bool = False
    ) -> Fault:
        """Close matching requests' connections without an answer (a transport error)."""
        return self.fail(path_prefix, 0, times=times, exact=exact)

    def delay(self, path_prefix: str, seconds: float, *, exact: bool = False) -> None:
        """Wait `seconds` before answering matching requests (until `clear_faults`)."""
        with self._lock:
            self._delays.append(Delay(path_prefix, seconds, exact))

    def clear_faults(self) -> None:
        """Drop every fault and delay."""
        with self._lock:
            self._faults.clear()
            self._delays.clear()

    def set_membership_state(self, team: str, login: str, state: str) -> None:
        """Answer the membership probe of (team, login) in any org of the directory with 200 and
        this `state` (e.g. "pending"), whatever the identities say."""
        with self._lock:
            self.membership_states[(team.lower(), login.lower())] = state

    def count(self, path_prefix: str, *, exact: bool = False) -> int:
        """How many requests matched `path_prefix` so far."""
        with self._lock:
            return sum(1 for _, target in self.requests if _matches(path_prefix, target, exact))

    def _take_fault(self, target: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if _matches(fault.path, target, fault.exact):
                    if fault.times is not None:
                        fault.times -= 1
                        if fault.times <= 0:
                            self._faults.remove(fault)
                    return fault
        return None

    def _wait(self, target: str) -> None:
        with self._lock:
            seconds = sum(d.seconds for d in self._delays if _matches(d.path, target, d.exact))
        if seconds > 0:
            time.sleep(seconds)

    def _caller(self, authorization: str) -> Identity | None:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() not in ("bearer", "token"):
            return None
        return self.directory.identities.get(token.strip())

    def route(self, target: str, authorization: str) -> tuple[int, Any]:
        path, _, query = target.partition("?")
        caller = self._caller(authorization)
        if caller is None:
            if not authorization:
                return 401, {"message": "Requires authentication", "documentation_url": _DOCS}
            return 401, {"message": "Bad credentials", "documentation_url": _DOCS}
        if path == "/user":
            return 200, {"login": caller.login, "id": caller.id, "type": "User"}
        if path == "/user/teams":
            listing = [
                {"slug": team, "name": team, "organization": {"login": org}}
                for org in self.directory.orgs
                for team in caller.teams
            ]
            params = urllib.parse.parse_qs(query)
            per_page = min(max(_int(params.get("per_page"), 30), 1), 100)
            page = max(_int(params.get("page"), 1), 1)
            return 200, listing[(page - 1) * per_page : page * per_page]
        match = _MEMBERSHIP.match(path)
        if match:
            org, team, login = (urllib.parse.unquote(part) for part in match.groups())
            with self._lock:
                state = self.membership_states.get((team.lower(), login.lower()))
            member = self.directory.by_login(login)
            if org in self.directory.orgs and (
                state is not None or (member is not None and team in member.teams)
            ):
                return 200, {
                    "state": state or "active",
                    "role": "member",
                    "url": f"{self.url}{path}",
                }
            return 404, {"message": "Not Found", "documentation_url": _DOCS}
        return 404, {"message": "Not Found", "documentation_url": _DOCS}

    def start(self) -> FakeGitHub:
        self._thread = threading.Thread(
            # a short poll interval: stop() waits for one poll (tests start one fake per test)
            target=self.server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-github",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


def _int(values: list[str] | None, default: int) -> int:
    try:
        return int(values[0]) if values else default
    except ValueError:
        return default


def _page(items: list[Any], params: dict[str, list[str]]) -> list[Any]:
    per_page = min(max(_int(params.get("per_page"), 30), 1), 100)
    page = max(_int(params.get("page"), 1), 1)
    return items[(page - 1) * per_page : page * per_page]


def _stamp(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


# --- the GitHub App endpoints (the repo-request feature) -----------------------------------

_APP_ROUTES = re.compile(r"^/(app/installations/|repos/|orgs/[^/]+/repos)")


@dataclass
class FakeRepo:
    name: str
    private: bool
    is_template: bool = False
    readable: bool = True  # the App can read its contents


class FakeApp:
    """One App installation on `org`: it mints installation tokens for a correctly signed App
    JWT (RS256, verified with `public_key_pem`), and serves the repo calls for those tokens.
    `repos` is the org's repositories, by lower-cased name; `created` counts creations.

    Deployments, for an installation token (401 without one):

    * `POST /repos/{owner}/{name}/deployments` → 201 `{"id", "sha", "ref", "environment",
      "transient_environment", "production_environment", "description", ...}`, ids counting
      from 1 across repositories; 422 for a ref that is not a known commit (below) or a body
      without one;
    * `POST /repos/{owner}/{name}/deployments/{id}/statuses` → 201 (422 for an unknown
      state). As on GitHub, `auto_inactive` (default true) on a `success` adds `inactive` to
      the repository's earlier deployments to that environment whose latest state is
      `success`, unless they are transient or production;
    * `GET /repos/{owner}/{name}/deployments[?environment=…&sha=…]` and
      `GET /repos/{owner}/{name}/deployments/{id}[/statuses]`: newest first, paged like GitHub
      (`per_page`, default 30, at most 100; `page`, from 1).

    The access rule: the App sees the org's repositories (`repos`) and those granted with
    `grant(owner/name)` (kept, lower-cased, in `accessible_repos`); any other repository, and
    a deployment id not of that repository, is a 404. A granted repository's commits are any
    7-40 hex digits, unless `grant` was given `shas`: then only those (or an abbreviation of
    one). `deployments` is the in-process record, oldest first: a dict per deployment (its
    `repo` as "owner/name", its fields as answered, and its `statuses`, oldest first); read it
    under `lock` (or through `deployments_of`) while requests may be in flight."""

    def __init__(
        self, app_id: str, installation_id: str, public_key_pem: str, org: str,
        *, clock: Any = time.time,
    ) -> None:  # fmt: skip
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        self.app_id, self.installation_id, self.org = app_id, installation_id, org
        key = serialization.load_pem_public_key(public_key_pem.encode())
        if not isinstance(key, rsa.RSAPublicKey):
            raise ValueError("the App's public key must be RSA")
        self._public_key: rsa.RSAPublicKey = key
        self._clock = clock
        self.tokens: dict[str, float] = {}  # installation token → expiry
        self.repos: dict[str, FakeRepo] = {}
        self.created: list[str] = []
        self.actions_disabled: list[str] = []
        self.accessible_repos: set[str] = set()  # lower-cased "owner/name", beyond the org's
        self.commits: dict[str, set[str]] = {}  # lower-cased "owner/name" → its known shas
        self.deployments: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    @property
    def lock(self) -> threading.Lock:
        return self._lock

    def grant(self, repo: str, *, shas: Any = None) -> None:
        """Let the App see `repo` ("owner/name"); with `shas`, those are its only commits."""
        key = repo.lower()
        with self._lock:
            self.accessible_repos.add(key)
            if shas is not None:
                self.commits[key] = {str(sha).lower() for sha in shas}

    def revoke(self, repo: str) -> None:
        with self._lock:
            self.accessible_repos.discard(repo.lower())

    def deployments_of(self, repo: str, environment: str | None = None) -> list[dict[str, Any]]:
        """Copies of `repo`'s deployments (to `environment`, if given), newest first, each with
        its `statuses` newest first."""
        with self._lock:
            return [
                {**d, "statuses": [dict(st) for st in reversed(d["statuses"])]}
                for d in reversed(self.deployments)
                if d["repo"].lower() == repo.lower()
                and (environment is None or d["environment"] == environment)
            ]

    def handles(self, target: str) -> bool:
        return bool(_APP_ROUTES.match(target.split("?", 1)[0]))

    def add_template(self, name: str, *, readable: bool = True) -> None:
        self.repos[name.lower()] = FakeRepo(name, private=False, is_template=True,
                                            readable=readable)  # fmt: skip

    def route(self, method: str, target: str, authorization: str, body: bytes) -> tuple[int, Any]:
        path, _, query = target.partition("?")
        parts = [urllib.parse.unquote(p) for p in path.strip("/").split("/")]
        if parts[:2] == ["app", "installations"] and parts[3:] == ["access_tokens"]:
            return self._mint(method, parts[2], authorization)
        scheme, _, token = authorization.partition(" ")
        if scheme != "token" or self.tokens.get(token.strip(), 0) < self._clock():
            return 401, {"message": "Bad credentials", "documentation_url": _DOCS}
        sent = json.loads(body) if body else {}
        with self._lock:
            return self._repo_route(method, parts, query, sent)

    def _mint(self, method: str, installation: str, authorization: str) -> tuple[int, Any]:
        scheme, _, app_token = authorization.partition(" ")
        if method != "POST" or scheme != "Bearer" or not self._valid_jwt(app_token.strip()):
            return 401, {"message": "A JSON web token could not be decoded",
                         "documentation_url": _DOCS}  # fmt: skip
        if installation != self.installation_id:
            return 404, {"message": "Not Found", "documentation_url": _DOCS}
        token = "ghs_" + uuid.uuid4().hex
        expires = self._clock() + 3600
        self.tokens[token] = expires
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires))
        return 201, {"token": token, "expires_at": stamp}

    def _valid_jwt(self, token: str) -> bool:
        import jwt

        try:
            # RS256 only; times are judged below on the fake's own clock, not the wall clock
            claims = jwt.decode(
                token, self._public_key, algorithms=["RS256"],
                options={"require": ["iss", "iat", "exp"], "verify_exp": False,
                         "verify_iat": False, "verify_nbf": False},
            )  # fmt: skip
        except (jwt.PyJWTError, ValueError):
            return False
        now = self._clock()
        return bool(
            str(claims.get("iss")) == self.app_id and claims["iat"] <= now + 60
            and claims["exp"] > now and claims["exp"] - claims["iat"] <= 600
        )  # fmt: skip

    def _repo_route(
        self, method: str, parts: list[str], query: str, sent: dict[str, Any]
    ) -> tuple[int, Any]:
        missing = (404, {"message": "Not Found", "documentation_url": _DOCS})
        if parts[:1] == ["repos"] and len(parts) >= 4 and parts[3] == "deployments":
            if not self._sees(parts[1], parts[2]):
                return missing
            return self._deployment_route(method, f"{parts[1]}/{parts[2]}", parts[4:], query,
                                          sent)  # fmt: skip
        if parts[:1] == ["orgs"] and parts[2:] == ["repos"]:
            if parts[1] != self.org:
                return missing
            if method == "POST":
                return self._create(str(sent.get("name", "")), bool(sent.get("private")))
            params = urllib.parse.parse_qs(query)
            per_page = min(max(_int(params.get("per_page"), 30), 1), 100)
            page = max(_int(params.get("page"), 1), 1)
            listing = [self._json(r) for r in sorted(self.repos.values(), key=lambda r: r.name)]
            return 200, listing[(page - 1) * per_page : page * per_page]
        if parts[:1] != ["repos"] or len(parts) < 3 or parts[1] != self.org:
            return missing
        repo = self.repos.get(parts[2].lower())
        tail = parts[3:]
        if method == "GET" and not tail:
            return (200, self._json(repo)) if repo else missing
        if method == "POST" and tail == ["generate"]:
            if repo is None or not repo.is_template:
                return missing
            if not repo.readable:
                return 422, {"message": "Could not clone: the template is not accessible",
                             "documentation_url": _DOCS}  # fmt: skip
            return self._create(str(sent.get("name", "")), bool(sent.get("private")))
        if method == "PUT" and tail == ["actions", "permissions"] and repo is not None:
            self.actions_disabled.append(repo.name)
            return 204, {}
        if method == "GET" and tail[:1] == ["contents"] and repo is not None:
            return (200, []) if repo.readable else (403, {"message": "Resource not accessible"})
        return missing

    # --- deployments (called under the lock) -----------------------------------------------

    def _sees(self, owner: str, name: str) -> bool:
        if f"{owner}/{name}".lower() in self.accessible_repos:
            return True
        return owner == self.org and name.lower() in self.repos

    def _deployment_route(
        self, method: str, repo: str, tail: list[str], query: str, sent: dict[str, Any]
    ) -> tuple[int, Any]:
        missing = (404, {"message": "Not Found", "documentation_url": _DOCS})
        params = urllib.parse.parse_qs(query)
        if not tail:
            if method == "POST":
                return self._deploy(repo, sent)
            if method != "GET":
                return missing
            found = [
                self._deployment_json(d) for d in reversed(self.deployments)
                if d["repo"].lower() == repo.lower()
                and all(d[k] == v[0] for k, v in params.items() if k in ("environment", "sha"))
            ]  # fmt: skip
            return 200, _page(found, params)
        deployment = next(
            (d for d in self.deployments
             if str(d["id"]) == tail[0] and d["repo"].lower() == repo.lower()), None,
        )  # fmt: skip
        if deployment is None:
            return missing
        if tail[1:] == [] and method == "GET":
            return 200, self._deployment_json(deployment)
        if tail[1:] != ["statuses"]:
            return missing
        if method == "GET":
            return 200, _page([dict(st) for st in reversed(deployment["statuses"])], params)
        if method != "POST":
            return missing
        state = sent.get("state")
        if state not in ("success", "inactive", "failure", "error", "in_progress", "queued",
                         "pending"):  # fmt: skip
            return 422, {"message": "Validation Failed", "errors": [
                {"resource": "DeploymentStatus", "field": "state", "code": "invalid"}]}  # fmt: skip
        status = self._add_status(deployment, str(state), sent)
        if state == "success" and sent.get("auto_inactive", True):
            for earlier in self.deployments:
                if (
                    earlier["repo"].lower() == repo.lower() and earlier["id"] < deployment["id"]
                    and earlier["environment"] == deployment["environment"]
                    and not earlier["transient_environment"]
                    and not earlier["production_environment"]
                    and earlier["statuses"] and earlier["statuses"][-1]["state"] == "success"
                ):  # fmt: skip
                    self._add_status(earlier, "inactive", {})
        return 201, status

    def _deploy(self, repo: str, sent: dict[str, Any]) -> tuple[int, Any]:
        ref = sent.get("ref")
        known = self.commits.get(repo.lower())
        if not (isinstance(ref, str) and re.fullmatch(r"[0-9a-fA-F]{7,40}", ref)) or (
            known is not None and not any(sha.startswith(ref.lower()) for sha in known)
        ):
            return 422, {"message": f"No ref found for: {ref}", "documentation_url": _DOCS}
        sha = next((s for s in sorted(known or ()) if s.startswith(ref.lower())), ref.lower())
        deployment = {
            "id": len(self.deployments) + 1,
            "repo": repo,
            "sha": sha,
            "ref": ref,
            "task": "deploy",
            "environment": str(sent.get("environment") or "production"),
            "description": sent.get("description"),
            "transient_environment": bool(sent.get("transient_environment", False)),
            "production_environment": bool(sent.get("production_environment", False)),
            "auto_merge": sent.get("auto_merge", True),
            "required_contexts": sent.get("required_contexts"),
            "created_at": _stamp(self._clock()),
            "statuses": [],
        }
        self.deployments.append(deployment)
        return 201, self._deployment_json(deployment)

    def _add_status(
        self, deployment: dict[str, Any], state: str, sent: dict[str, Any]
    ) -> dict[str, Any]:
        status = {
            "id": sum(len(d["statuses"]) for d in self.deployments) + 1,
            "state": state,
            "environment": deployment["environment"],
            "environment_url": str(sent.get("environment_url") or ""),
            "log_url": str(sent.get("log_url") or ""),
            "description": str(sent.get("description") or ""),
            "created_at": _stamp(self._clock()),
        }
        deployment["statuses"].append(status)
        return dict(status)

    def _deployment_json(self, deployment: dict[str, Any]) -> dict[str, Any]:
        url = f"https://api.github.com/repos/{deployment['repo']}/deployments/{deployment['id']}"
        fields = {k: v for k, v in deployment.items() if k not in ("repo", "statuses")}
        return {**fields, "url": url, "statuses_url": f"{url}/statuses"}

    def _create(self, name: str, private: bool) -> tuple[int, Any]:
        if name.lower() in self.repos:
            taken = [{"message": "name already exists on this account"}]
            return 422, {"message": "Repository creation failed.", "errors": taken}
        repo = self.repos[name.lower()] = FakeRepo(name, private)
        self.created.append(name)
        return 201, self._json(repo)

    def _json(self, repo: FakeRepo) -> dict[str, Any]:
        return {
            "name": repo.name,
            "full_name": f"{self.org}/{repo.name}",
            "private": repo.private,
            "is_template": repo.is_template,
            "html_url": f"https://github.com/{self.org}/{repo.name}",
        }


# --- the GitHub Actions OIDC issuer ------------------------------------------------------------

OIDC_MINT_PATH = "/_oidc/token"
OIDC_JWKS_PATH = "/.well-known/jwks"  # where GitHub's own issuer serves its keys
_OIDC_ROUTES = ("/.well-known/openid-configuration", OIDC_JWKS_PATH, OIDC_MINT_PATH)
OIDC_KID = "fake-oidc-key-1"


class FakeOidcIssuer:
    """GitHub Actions' token issuer, at the fake's URL (`issuer()`), signing with an RSA key of
    its own (made on first use: most fakes never issue a token).

    `GET|POST /_oidc/token[?audience=…]` answers `{"value": "<jwt>"}`, as a workflow's
    `ACTIONS_ID_TOKEN_REQUEST_URL` does, to a request carrying a bearer token (as the runner's
    `ACTIONS_ID_TOKEN_REQUEST_TOKEN`; any non-empty one). Any other query parameter (but
    `api-version`) sets that claim, so a test's request URL stands for the run it simulates
    (`?event_name=pull_request&ref=refs/pull/7/merge`); a POST's JSON object overrides or adds
    claims too (a claim set to null is dropped). `mint()` does the same in process, and may
    also set header fields (`kid`, ...) for tests of refused tokens."""

    def __init__(self, issuer: Any, *, clock: Any = time.time) -> None:
        self.issuer = issuer  # () -> the issuer URL: the fake's port is known only once bound
        self._clock = clock
        self._key: Any = None
        self.kid = OIDC_KID  # the key id of the current key
        self._lock = threading.Lock()

    @property
    def private_key(self) -> Any:
        """The signing key (cryptography's RSAPrivateKey)."""
        with self._lock:
            if self._key is None:
                from cryptography.hazmat.primitives.asymmetric import rsa

                self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            return self._key

    def jwks(self) -> dict[str, Any]:
        from jwt.algorithms import RSAAlgorithm

        jwk = json.loads(RSAAlgorithm.to_jwk(self.private_key.public_key()))
        return {"keys": [{**jwk, "kid": self.kid, "use": "sig", "alg": "RS256"}]}

    def rotate(self, kid: str) -> None:
        """Sign with a new key, published under `kid`; the old key is no longer published."""
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        with self._lock:
            self._key, self.kid = key, kid

    def claims(
        self, overrides: dict[str, Any] | None = None, audience: str | None = None
    ) -> dict[str, Any]:
        """A workflow run's claims, as GitHub sets them, with `overrides` applied."""
        now = int(self._clock())
        owner = str((overrides or {}).get("repository_owner") or "freeCodeCamp")
        repository = str((overrides or {}).get("repository") or f"{owner}/example-site")
        ref = str((overrides or {}).get("ref") or "refs/heads/main")
        claims: dict[str, Any] = {
            "iss": self.issuer(),
            "aud": audience or f"https://github.com/{owner}",
            "sub": f"repo:{repository}:ref:{ref}",
            "jti": str(uuid.uuid4()),
            "iat": now,
            "nbf": now,
            "exp": now + 300,
            "repository": repository,
            "repository_owner": owner,
            "repository_id": "100001",
            "repository_owner_id": "100000",
            "repository_visibility": "public",
            "ref": ref,
            "ref_type": "branch",
            "sha": "0" * 40,
            "workflow": "deploy",
            "workflow_ref": f"{repository}/.github/workflows/deploy.yml@{ref}",
            "job_workflow_ref": f"{repository}/.github/workflows/deploy.yml@{ref}",
            "event_name": "push",
            "run_id": str(1_000_000 + uuid.uuid4().int % 1_000_000),
            "run_number": "1",
            "run_attempt": "1",
            "actor": "local-dev",
            "actor_id": "100002",
            "runner_environment": "github-hosted",
        }
        for name, value in (overrides or {}).items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        return claims

    def mint(
        self,
        overrides: dict[str, Any] | None = None,
        *,
        audience: str | None = None,
        headers: dict[str, Any] | None = None,
    ) -> str:
        import jwt

        # Signed as raw JSON (PyJWS, not jwt.encode, which refuses some claim values), so a
        # test can have the issuer sign any claims at all.
        return jwt.PyJWS().encode(
            json.dumps(self.claims(overrides, audience)).encode(),
            self.private_key,
            algorithm="RS256",
            headers={"kid": self.kid, "typ": "JWT", **(headers or {})},
        )

    def handles(self, target: str) -> bool:
        return target.split("?", 1)[0] in _OIDC_ROUTES

    def route(self, method: str, target: str, authorization: str, body: bytes) -> tuple[int, Any]:
        path, _, query = target.partition("?")
        if path == OIDC_MINT_PATH and method in ("GET", "POST"):
            scheme, _, credential = authorization.partition(" ")
            if scheme.lower() != "bearer" or not credential.strip():
                return 401, {"message": "Bad credentials"}
            try:
                sent = json.loads(body) if body else {}
            except ValueError:
                sent = None
            if not isinstance(sent, dict):
                return 400, {"message": "the body must be a JSON object of claims"}
            params = dict(urllib.parse.parse_qsl(query))
            audience = params.pop("audience", None)
            params.pop("api-version", None)
            return 200, {"value": self.mint({**params, **sent}, audience=audience)}
        if method != "GET":
            return 405, {"message": "Method Not Allowed"}
        if path == OIDC_JWKS_PATH:
            return 200, self.jwks()
        issuer = self.issuer()
        return 200, {
            "issuer": issuer,
            "jwks_uri": issuer + OIDC_JWKS_PATH,
            "subject_types_supported": ["public", "pairwise"],
            "response_types_supported": ["id_token"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "claims_supported": ["sub", "aud", "exp", "iat", "iss", "jti", "nbf", "ref",
                                 "repository", "repository_id", "job_workflow_ref", "run_id",
                                 "event_name"],
            "scopes_supported": ["openid"],
        }  # fmt: skip
