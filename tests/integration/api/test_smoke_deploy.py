"""The acceptance path: a 3-file site deployed by raw HTTP calls (init, upload x3, finalize,
promote) works end to end, and the production alias object holds the deploy id."""

from tests.integration.api.conftest import DEV, Api


def test_three_file_site_by_raw_http(api: Api) -> None:
    api.register("www", ["web"])
    session = api.init("www", sha="abc1234def5678")
    assert session["deployId"].endswith("-abc1234")
    files = {"index.html": b"<h1>hi</h1>", "css/site.css": b"body{}", "js/app.js": b"1"}
    for path, data in files.items():
        reply = api.upload(session, path, data, "application/octet-stream")
        assert reply.status == 200, reply.raw
        assert reply.body == {
            "received": path,
            "key": f"www.example.org/deploys/{session['deployId']}/{path}",
        }
    reply = api.finalize(session, list(files), "preview")
    assert reply.status == 200, reply.raw
    assert reply.body == {
        "url": "https://www.preview.example.org",
        "deployId": session["deployId"],
        "mode": "preview",
    }
    reply = api.call(
        "POST", "/api/site/www/promote", token=DEV, json_body={"deployId": session["deployId"]}
    )
    assert reply.status == 200, reply.raw
    assert reply.body == {"url": "https://www.example.org", "deployId": session["deployId"]}
    assert api.alias_object("www.example.org", "production") == session["deployId"]
    assert api.alias_object("www.example.org", "preview") == session["deployId"]
    rows = api.sql(
        "SELECT name, deploy_id FROM aliases WHERE site = 'www.example.org' ORDER BY name"
    )
    assert rows == [("preview", session["deployId"]), ("production", session["deployId"])]
    assert api.sql("SELECT count(*) FROM outbox WHERE payload->>'site' = 'www.example.org'") == [
        (2,)
    ]
