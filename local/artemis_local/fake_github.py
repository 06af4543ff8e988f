"""A fake GitHub REST API for the endpoints Artemis calls, with GitHub's status codes and
error bodies. Identities and team memberships come from a YAML file (identities.yaml)."""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
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


class FakeGitHub:
    """Serve the directory on 127.0.0.1:port (0 = a free port) until `stop()`."""

    def __init__(
        self, directory: Directory | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.directory = directory or Directory.load()
        self.requests: list[tuple[str, str]] = []  # (method, path), for tests that count calls
        fake = self

        class RequestHandler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                fake.requests.append(("GET", self.path))
                status, body = fake.route(self.path, self.headers.get("authorization", ""))
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer((host, port), RequestHandler)
        self.server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def _caller(self, authorization: str) -> Identity | None:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() not in ("bearer", "token"):
            return None
        return self.directory.identities.get(token.strip())

    def route(self, target: str, authorization: str) -> tuple[int, Any]:
        path = target.split("?", 1)[0]
        caller = self._caller(authorization)
        if caller is None:
            if not authorization:
                return 401, {"message": "Requires authentication", "documentation_url": _DOCS}
            return 401, {"message": "Bad credentials", "documentation_url": _DOCS}
        if path == "/user":
            return 200, {"login": caller.login, "id": caller.id, "type": "User"}
        if path == "/user/teams":
            return 200, [
                {"slug": team, "name": team, "organization": {"login": org}}
                for org in self.directory.orgs
                for team in caller.teams
            ]
        match = _MEMBERSHIP.match(path)
        if match:
            org, team, login = match.groups()
            member = self.directory.by_login(login)
            if org in self.directory.orgs and member is not None and team in member.teams:
                return 200, {"state": "active", "role": "member", "url": f"{self.url}{path}"}
            return 404, {"message": "Not Found", "documentation_url": _DOCS}
        return 404, {"message": "Not Found", "documentation_url": _DOCS}

    def start(self) -> FakeGitHub:
        self._thread = threading.Thread(
            target=self.server.serve_forever, name="fake-github", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
