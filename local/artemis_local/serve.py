"""The local preview serve plane: what the public URLs answer in
production, done here so a deploy can be opened in a browser.

* `http://<site>.localhost:$PORT/<path>` serves the site's production alias,
  `http://<site>.preview.localhost:$PORT/<path>` its preview alias (browsers resolve every
  `*.localhost` name to the loopback address);
* `http://<alias>--<site>.preview.localhost:$PORT/<path>` serves a named preview (the host
  splits at its first `--`: a name that itself holds `--` is reached by path);
* `http://127.0.0.1:$PORT/_serve/<site>/<production|preview|alias>/<path>` does the same by path.

`<site>` is the registry slug. Each request resolves the alias object to a deploy id and
streams `<deploy prefix><path>` with the object's content type. A path ending in `/` serves its
`index.html`; a path without an extension whose `index.html` exists redirects to the path with
a slash (so relative links resolve); anything missing is a 404 page (the site's own `404.html`
when it has one).

Alias lookups (found or missing) are cached for `SERVE_CACHE_TTL`, as the real serve plane
caches them, so a change made outside this process (another `artemis-admin`, a tool writing
the bucket) shows after at most that long. Changes made through this gateway's API do not
wait: every API request that may write (any method but GET, HEAD, OPTIONS) drops the cache
once the function has answered, so a promote shows on the next request, and a page opened
before the first deploy stops 404ing as soon as it is published.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from artemis.alias_names import is_alias_name
from artemis.keys import Slug
from artemis.site_names import is_slug
from artemis_local.gateway import Gateway, Request, Response

if TYPE_CHECKING:
    from artemis.runtime import Runtime

SERVE_PREFIX = "/_serve/"
CHUNK = 64 * 1024
_HOST = re.compile(r"^(?P<site>[a-z0-9-]+)(?P<preview>\.preview)?\.localhost$")
_NOT_FOUND = (
    b"<!doctype html><title>404 Not Found</title>"
    b"<h1>404 Not Found</h1><p>Nothing is published at this address.</p>"
)


Target = tuple[str, str, str]  # (site, alias, file path)


def _targets(host: str, path: str) -> list[Target]:
    """What a request may address, in the order to try; empty when it is not a serve request.
    `a--b.preview.localhost` is both site `a--b`'s preview and site `b`'s named preview `a`
    (slugs and alias names may hold `--`): the site's own preview, when published, wins."""
    bare_path = urlsplit(path).path
    if bare_path.startswith(SERVE_PREFIX):
        parts = bare_path[len(SERVE_PREFIX) :].split("/", 2)
        if len(parts) >= 2 and is_alias_name(parts[1]):
            return [(parts[0], parts[1], "/" + (parts[2] if len(parts) == 3 else ""))]
    match = _HOST.match(host.rsplit(":", 1)[0].lower())
    if not match:
        return []
    if not match["preview"]:
        return [(match["site"], "production", bare_path)]
    found = [(match["site"], "preview", bare_path)]
    alias, sep, site = match["site"].partition("--")  # `<alias>--<site>.preview.localhost`
    if sep and is_alias_name(alias):
        found.append((site, alias, bare_path))
    return found


class ServePlane:
    def __init__(
        self, runtime: Callable[[], Runtime], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._runtime = runtime
        self._clock = clock
        self._aliases: dict[tuple[str, str], tuple[str | None, float]] = {}
        self._lock = threading.Lock()
        # Bumped by forget(): a lookup that started before a write must not cache what it
        # read, or the alias it read before the move would be served for another TTL.
        self._generation = 0

    def matches(self, host: str, path: str) -> bool:
        return bool(_targets(host, path))

    def forget(self) -> None:
        """Drop every cached lookup (this system may just have moved an alias)."""
        with self._lock:
            self._aliases.clear()
            self._generation += 1

    def deploy_for(self, site: str, mode: str) -> str | None:
        """The deploy the alias names, read at most once per SERVE_CACHE_TTL (or forget())."""
        rt = self._runtime()
        now = self._clock()
        with self._lock:
            cached = self._aliases.get((site, mode))
            if cached and cached[1] > now:
                return cached[0]
            generation = self._generation
        layout = rt.settings.key_layout
        deploy_id = rt.bucket.get_alias(layout.alias_key(layout.dirname(Slug(site)), mode))
        with self._lock:
            if self._generation == generation:
                self._aliases[(site, mode)] = (deploy_id, now + rt.settings.serve_cache_ttl)
        return deploy_id

    def serve(self, request: Request) -> Response:
        targets = _targets(request.header("host"), request.path)
        assert targets
        site, mode, raw_path = targets[0]
        for candidate in targets[1:]:
            if self.deploy_for(site, mode) is not None or not is_slug(candidate[0], frozenset()):
                break
            site, mode, raw_path = candidate
        if request.method not in ("GET", "HEAD"):
            return Response(405, [("Allow", "GET, HEAD")])
        bare = urlsplit(request.path).path
        if bare == f"{SERVE_PREFIX}{site}/{mode}":  # the root needs its slash for relative links
            return Response(301, [("Location", bare + "/")])
        path = unquote(raw_path)
        segments = path.split("/")
        if (
            not is_slug(site, frozenset())
            or any(s in (".", "..") for s in segments)
            or "\\" in path
        ):
            return self._not_found(None, "")
        deploy_id = self.deploy_for(site, mode)
        if deploy_id is None:
            return self._not_found(None, "")
        rt = self._runtime()
        prefix = rt.settings.key_layout.deploy_prefix(
            rt.settings.key_layout.dirname(Slug(site)), deploy_id
        )
        relative = path.lstrip("/")
        if relative == "" or relative.endswith("/"):
            relative += "index.html"
        obj = self._open(rt, prefix + relative)
        is_directory = (
            obj is None
            and "." not in relative.rsplit("/", 1)[-1]
            and self._open(rt, prefix + relative + "/index.html", head=True) is not None
        )
        if is_directory:
            return Response(301, [("Location", urlsplit(request.path).path + "/")])
        if obj is None:
            return self._not_found(rt, prefix)
        return self._stream(200, obj)

    @staticmethod
    def _open(rt: Runtime, key: str, *, head: bool = False) -> dict[str, Any] | None:
        client = rt.bucket.client
        try:
            if head:
                return dict(client.head_object(Bucket=rt.bucket.name, Key=key))
            return dict(client.get_object(Bucket=rt.bucket.name, Key=key))
        except client.exceptions.NoSuchKey:
            return None
        except client.exceptions.ClientError as err:
            if err.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise

    def _not_found(self, rt: Runtime | None, prefix: str) -> Response:
        page = self._open(rt, prefix + "404.html") if rt is not None else None
        if page is not None:
            return self._stream(404, page)
        return Response(404, [("Content-Type", "text/html; charset=utf-8")], _NOT_FOUND)

    @staticmethod
    def _stream(status: int, obj: dict[str, Any]) -> Response:
        body = obj["Body"]
        return Response(
            status,
            [
                ("Content-Type", obj.get("ContentType") or "application/octet-stream"),
                ("Cache-Control", "no-cache"),
            ],
            chunks=iter(lambda: bytes(body.read(CHUNK)), b""),
            length=int(obj["ContentLength"]),
            close=body.close,
        )


def attach(gateway: Gateway, runtime: Callable[[], Runtime]) -> ServePlane:
    """Serve the preview plane from `gateway`; its API writes drop the plane's cache."""
    plane = ServePlane(runtime)
    gateway.routes.append((plane.matches, plane.serve))
    gateway.after_write.append(plane.forget)
    return plane
