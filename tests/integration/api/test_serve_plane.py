"""The local preview serve plane (local/artemis_local/serve.py) on the API tests' gateway:
`<site>.localhost` and `/_serve/<site>/<mode>/` resolve the alias object and stream the
deploy's files."""

from __future__ import annotations

from artemis import runtime
from artemis_local.serve import ServePlane
from tests.integration.api.conftest import DEV, STAFF, Api

FILES = {
    "index.html": b"<h1>home</h1>",
    "docs/index.html": b"<h1>docs</h1>",
    "style.css": b"h1{color:green}",
    "404.html": b"<h1>custom missing page</h1>",
}


TYPES = {".html": "text/html", ".css": "text/css"}


def deploy_typed(api: Api, site: str, files: dict[str, bytes], mode: str) -> str:
    session = api.init(site)
    for path, data in files.items():
        assert api.upload(session, path, data, TYPES[path[path.rindex(".") :]]).status == 200
    assert api.finalize(session, list(files), mode).status == 200
    deploy_id: str = session["deployId"]
    return deploy_id


def get(api: Api, host: str, path: str) -> tuple[int, dict[str, str], bytes]:
    reply = api.call("GET", path, headers={"Host": host})
    return reply.status, reply.headers, reply.raw


def test_the_production_host_serves_files_with_their_types(api: Api) -> None:
    api.register("www", ["web"])
    deploy_id = deploy_typed(api, "www", FILES, "production")
    status, headers, body = get(api, "www.localhost:8080", "/")
    assert (status, body) == (200, FILES["index.html"]) and headers["content-type"] == "text/html"
    status, headers, body = get(api, "www.localhost", "/style.css")
    assert (status, body) == (200, FILES["style.css"]) and headers["content-type"] == "text/css"
    assert get(api, "www.localhost", "/docs/")[2] == FILES["docs/index.html"]
    status, headers, _ = get(api, "www.localhost", "/docs")
    assert status == 301 and headers["location"] == "/docs/"
    status, _, body = get(api, "www.localhost", "/nope.js")
    assert (status, body) == (404, FILES["404.html"])
    assert get(api, "www.localhost", "/../etc/passwd")[0] == 404
    assert api.alias_object("www.example.org", "production") == deploy_id


def test_preview_by_host_and_by_path(api: Api) -> None:
    api.register("www", ["web"])
    api.deploy("www", files={"index.html": b"<h1>preview</h1>"})
    assert get(api, "www.preview.localhost", "/")[2] == b"<h1>preview</h1>"
    assert get(api, "127.0.0.1", "/_serve/www/preview/")[2] == b"<h1>preview</h1>"
    status, headers, _ = get(api, "127.0.0.1", "/_serve/www/preview")
    assert status == 301 and headers["location"] == "/_serve/www/preview/"
    status, _, body = get(api, "www.localhost", "/")  # nothing on production yet
    assert status == 404 and b"404 Not Found" in body


def test_the_api_is_not_shadowed(api: Api) -> None:
    assert api.call("GET", "/healthz").status == 200
    assert api.call("GET", "/api/whoami", token=STAFF).status == 200


def test_alias_lookups_are_cached_for_the_serve_ttl(api: Api) -> None:
    api.register("www", ["web"])
    first = api.deploy("www", mode="production")
    now = [1000.0]
    plane = ServePlane(runtime.current, clock=lambda: now[0])
    assert plane.deploy_for("www", "production") == first
    second = api.deploy("www", mode="production")
    assert plane.deploy_for("www", "production") == first  # still cached
    now[0] += runtime.current().settings.serve_cache_ttl + 0.001
    assert plane.deploy_for("www", "production") == second


def test_a_move_through_the_api_shows_on_the_next_request(api: Api) -> None:
    """A page opened before the first deploy, then each alias move, shows at once: the API's
    writes drop the plane's cache (SERVE_CACHE_TTL is 15 s here)."""
    assert runtime.current().settings.serve_cache_ttl >= 10
    api.register("www", ["web"])
    assert get(api, "www.localhost", "/")[0] == 404  # the miss is cached …
    api.deploy("www", mode="production", files={"index.html": b"<h1>one</h1>"})
    assert get(api, "www.localhost", "/")[2] == b"<h1>one</h1>"  # … and forgotten
    second = api.deploy("www", mode="preview", files={"index.html": b"<h1>two</h1>"})
    assert get(api, "www.preview.localhost", "/")[2] == b"<h1>two</h1>"
    reply = api.call("POST", "/api/site/www/promote", token=DEV)
    assert reply.status == 200, reply.raw
    assert api.alias_object("www.example.org", "production") == second
    assert get(api, "www.localhost", "/")[2] == b"<h1>two</h1>"


def test_a_lookup_that_raced_a_move_is_not_cached(api: Api) -> None:
    api.register("www", ["web"])
    first = api.deploy("www", mode="production")
    plane = ServePlane(runtime.current)
    real = runtime.current

    class Racing:
        """A runtime whose alias read is overtaken by a move (forget) before it returns."""

        def __getattr__(self, name: str) -> object:
            return getattr(real(), name)

        @property
        def bucket(self) -> object:
            bucket = real().bucket

            class Bucket:
                def get_alias(self, key: str) -> str | None:
                    value = bucket.get_alias(key)
                    plane.forget()
                    return value

            return Bucket()

    plane._runtime = Racing  # type: ignore[assignment]
    assert plane.deploy_for("www", "production") == first
    plane._runtime = real
    second = api.deploy("www", mode="production")
    assert plane.deploy_for("www", "production") == second


def test_a_named_preview_by_host_and_by_path(api: Api) -> None:
    api.register("www", ["web"])
    api.deploy("www", files={"index.html": b"<h1>preview</h1>"})
    session = api.init("www")
    assert api.upload(session, "index.html", b"<h1>pr 12</h1>").status == 200
    reply = api.call(
        "POST", f"/api/deploy/{session['deployId']}/finalize", token=session["jwt"],
        json_body={"files": ["index.html"], "alias": "pr-12"},
    )  # fmt: skip
    assert reply.status == 200, reply.raw
    assert get(api, "pr-12--www.preview.localhost:8080", "/")[2] == b"<h1>pr 12</h1>"
    assert get(api, "127.0.0.1", "/_serve/www/pr-12/")[2] == b"<h1>pr 12</h1>"
    assert get(api, "www.preview.localhost", "/")[2] == b"<h1>preview</h1>"  # untouched
    assert get(api, "pr-13--www.preview.localhost", "/")[0] == 404  # no such preview
    assert get(api, "127.0.0.1", "/_serve/www/PR-12/")[0] == 404  # not an alias name: the API
    assert api.call("DELETE", "/api/site/www/previews/pr-12", token=DEV).status == 200
    assert get(api, "pr-12--www.preview.localhost", "/")[0] == 404  # unpublished: gone at once


def test_a_site_whose_slug_holds_a_double_hyphen_keeps_its_hosts(api: Api) -> None:
    api.register("my--site", ["web"])
    api.deploy("my--site", mode="production", files={"index.html": b"<h1>prod</h1>"})
    api.deploy("my--site", files={"index.html": b"<h1>prev</h1>"})
    assert get(api, "my--site.localhost", "/")[2] == b"<h1>prod</h1>"
    assert get(api, "my--site.preview.localhost", "/")[2] == b"<h1>prev</h1>"
