"""Webhooks over HTTP (issue 16): the subscription routes, the events each change writes in its
own transaction, and real deliveries to a receiver on 127.0.0.1 through the fast path, the
notifications queue (moto) and the notifier's handler.

Black box: the local gateway runs the real handler against real Postgres, moto S3/SQS and the
fake GitHub; the notifier runs as the local SQS event source would call it. STAFF is the
registry team, DEV is in `web` (the site's team), OUTSIDER is in none.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from artemis import runtime, webhook_signature
from artemis_local.functions import LocalContext, load_handler
from artemis_local.sqs_source import poll_once
from tests.integration.api.conftest import DEV, OUTSIDER, STAFF, Api, Reply
from tests.integration.hook_receiver import Receiver, receiving

SITE = "hooked"
DIRNAME = f"{SITE}.example.org"
ALL_EVENTS = ["deploy.finalized", "alias.moved", "deploy.deleted", "deploy.restored",
              "site.deleted"]  # fmt: skip


def add(api: Api, url: str, events: list[str] | None = None, token: str = STAFF,
        slug: str = SITE) -> Reply:  # fmt: skip
    body = {"url": url, "events": events or ALL_EVENTS}
    return api.call("POST", f"/api/site/{slug}/hooks", token=token, json_body=body)


def deliveries_of(api: Api, hook_id: str) -> list[dict[str, Any]]:
    reply = api.call("GET", f"/api/site/{SITE}/hooks/{hook_id}/deliveries", token=STAFF)
    assert reply.status == 200, reply.raw
    rows: list[dict[str, Any]] = reply.body
    return rows


def audit_of(api: Api, reply: Reply) -> list[tuple[Any, ...]]:
    return api.sql(
        "SELECT actor, action, site, detail FROM audit_log WHERE request_id = %s",
        [reply.headers["x-request-id"]],
    )


def events_written(api: Api) -> list[tuple[str, dict[str, Any]]]:
    """(type, body) of every delivery row, oldest first."""
    rows = api.sql("SELECT event_type, body FROM hook_deliveries ORDER BY created_at, id")
    return [(kind, json.loads(bytes(body))) for kind, body in rows]


@pytest.fixture
def site(api: Api) -> str:
    api.register(SITE, ["web"])
    return SITE


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiving() as r:
        yield r


Notify = Callable[..., None]


@pytest.fixture
def notify(api: Api) -> Notify:
    """Run the notifier over the notifications queue until `done()` holds (or time runs out)."""
    handler = load_handler("notifier")
    url = api.rt.settings.notifications_queue_url
    assert url

    def run(done: Callable[[], bool], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            assert time.monotonic() < deadline, "the notifier did not get there in time"
            poll_once(api.rt.sqs, url, handler, LocalContext("notifier", timeout_ms=120_000),
                      wait_seconds=1)  # fmt: skip

    return run


# --- the routes ----------------------------------------------------------------------------------


def test_add_list_remove_with_audit_rows_and_the_secret_shown_once(
    api: Api, site: str, receiver: Receiver
) -> None:
    added = add(api, receiver.url, ["deploy.finalized", "alias.moved"], token=DEV)
    assert added.status == 201, added.raw
    hook = added.body
    assert hook["secret"].startswith("whsec_") and len(hook["secret"]) > 40
    assert (hook["site"], hook["url"], hook["createdBy"]) == (SITE, receiver.url, "local-dev")
    assert hook["events"] == ["deploy.finalized", "alias.moved"]
    [(actor, action, audited, detail)] = audit_of(api, added)
    assert (actor, action, audited) == ("local-dev", "site.hook.add", SITE)
    assert detail == {"id": hook["id"], "url": receiver.url, "events": hook["events"]}
    assert hook["secret"] not in json.dumps(detail)

    listed = api.call("GET", f"/api/site/{SITE}/hooks", token=DEV)
    assert listed.status == 200
    assert listed.body == [{k: v for k, v in hook.items() if k != "secret"}]
    assert hook["secret"] not in listed.raw.decode()

    removed = api.call("DELETE", f"/api/site/{SITE}/hooks/{hook['id']}", token=STAFF)
    assert removed.status == 200 and removed.body == listed.body[0]
    assert [row[1] for row in audit_of(api, removed)] == ["site.hook.remove"]
    assert api.call("GET", f"/api/site/{SITE}/hooks", token=DEV).body == []
    again = api.call("DELETE", f"/api/site/{SITE}/hooks/{hook['id']}", token=STAFF)
    assert (again.status, again.code) == (404, "hook_not_found")


@pytest.mark.parametrize(
    ("method", "tail"),
    [("GET", ""), ("POST", ""), ("DELETE", "/hk_0123456789abcdef0123"),
     ("POST", "/hk_0123456789abcdef0123/ping"), ("GET", "/hk_0123456789abcdef0123/deliveries")],
)  # fmt: skip
def test_the_gate_refuses_an_outsider_before_anything(
    api: Api, site: str, method: str, tail: str
) -> None:
    body = {"url": "http://127.0.0.1:9/x", "events": ["deploy.finalized"]}
    refused = api.call(method, f"/api/site/{SITE}/hooks{tail}", token=OUTSIDER,
                       json_body=body if method == "POST" else None)  # fmt: skip
    assert (refused.status, refused.code) == (403, "user_unauthorized")
    assert api.sql("SELECT count(*) FROM hook_subscriptions") == [(0,)]


def test_an_unregistered_site(api: Api) -> None:
    assert add(api, "http://127.0.0.1:9/x", slug="nosuch").code == "not_found"
    assert add(api, "http://127.0.0.1:9/x", slug="nosuch", token=DEV).code == "site_unauthorized"
    assert add(api, "http://127.0.0.1:9/x", slug="Bad_Slug").code == "invalid_slug"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"url": "http://127.0.0.1:9/x", "events": []}, "invalid_hook_events"),
        ({"url": "http://127.0.0.1:9/x", "events": ["deploy.exploded"]}, "invalid_hook_events"),
        ({"url": "http://127.0.0.1:9/x"}, "invalid_hook_events"),
        ({"url": "http://127.0.0.1:9/x", "events": "deploy.finalized"}, "bad_request"),
        ({"url": 7, "events": ["deploy.finalized"]}, "bad_request"),
    ],
)
def test_bad_bodies(api: Api, site: str, body: dict[str, Any], code: str) -> None:
    refused = api.call("POST", f"/api/site/{SITE}/hooks", token=STAFF, json_body=body)
    assert refused.code == code, refused.raw
    assert api.sql("SELECT count(*) FROM hook_subscriptions") == [(0,)]


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("", "hook_url_invalid"),
        ("not a url", "hook_url_invalid"),
        ("https://user:pw@127.0.0.1/x", "hook_url_invalid"),
        ("https://127.0.0.1/x#frag", "hook_url_invalid"),
        ("ftp://127.0.0.1/x", "hook_url_scheme"),
        ("file:///etc/passwd", "hook_url_scheme"),
        ("http://10.1.2.3/x", "hook_url_forbidden_address"),
        ("https://169.254.169.254/latest/meta-data/", "hook_url_forbidden_address"),
        ("https://[::ffff:169.254.169.254]/", "hook_url_forbidden_address"),
        ("https://[::ffff:a9fe:a9fe]/", "hook_url_forbidden_address"),
        ("https://[fd00:ec2::254]/", "hook_url_forbidden_address"),
        ("https://[fe80::1]/", "hook_url_forbidden_address"),
        ("https://192.168.0.1/", "hook_url_forbidden_address"),
        ("https://172.16.5.4/", "hook_url_forbidden_address"),
        ("https://100.64.0.1/", "hook_url_forbidden_address"),
        ("https://0.0.0.0/", "hook_url_forbidden_address"),
        ("https://no-such-host.invalid/", "hook_url_unresolvable"),
    ],
)
def test_a_url_the_outbound_policy_refuses(api: Api, site: str, url: str, code: str) -> None:
    refused = add(api, url)
    assert (refused.status, refused.code) == (422, code), refused.raw
    assert api.sql("SELECT count(*) FROM hook_subscriptions") == [(0,)]
    assert audit_of(api, refused) == []


def test_a_host_name_resolving_to_a_private_address_is_refused(
    api: Api, site: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the local stack's loopback allowance (as on AWS), `localhost` is a name that
    resolves to a non-public address: refused, whatever the scheme."""
    monkeypatch.setenv("HOOK_ALLOW_LOOPBACK_HTTP", "false")
    runtime.reset()
    for url in ("https://localhost/x", "http://localhost:8080/x", "https://127.0.0.1/x"):
        refused = add(api, url)
        assert refused.status == 422 and refused.code in (
            "hook_url_forbidden_address", "hook_url_scheme"
        ), refused.raw  # fmt: skip
    assert add(api, "https://localhost/x").code == "hook_url_forbidden_address"
    assert api.sql("SELECT count(*) FROM hook_subscriptions") == [(0,)]


def test_the_cap(api: Api, site: str) -> None:
    for _ in range(20):
        assert add(api, "http://127.0.0.1:9/x").status == 201
    over = add(api, "http://127.0.0.1:9/x")
    assert (over.status, over.code) == (409, "hook_limit")
    assert api.sql("SELECT count(*) FROM hook_subscriptions") == [(20,)]


# --- the events each change writes, in its own transaction -------------------------------------


def test_every_change_writes_its_event_for_the_subscribers_that_asked(api: Api, site: str) -> None:
    everything = add(api, "http://127.0.0.1:9/all").body
    finalized_only = add(api, "http://127.0.0.1:9/f", ["deploy.finalized"]).body
    first = api.deploy(SITE, mode="preview")
    second = api.deploy(SITE, mode="preview")
    promoted = api.call("POST", f"/api/site/{SITE}/promote", token=DEV,
                        json_body={"deployId": first})  # fmt: skip
    assert promoted.status == 200, promoted.raw
    assert api.call("POST", f"/api/site/{SITE}/rollback", token=DEV,
                    json_body={"to": second}).status == 200  # fmt: skip
    deleted = api.call("DELETE", f"/api/site/{SITE}/deploys/{first}", token=DEV)
    assert deleted.status == 200, deleted.raw
    assert api.call("POST", f"/api/site/{SITE}/deploys/{first}/restore", token=DEV).status == 200
    written = events_written(api)
    kinds = [(kind, body["data"].get("reason")) for kind, body in written]
    assert kinds == [
        ("deploy.finalized", None), ("deploy.finalized", None),  # to both hooks: 2 events
        ("deploy.finalized", None), ("deploy.finalized", None),
        ("alias.moved", "promote"), ("alias.moved", "rollback"),
        ("deploy.deleted", None), ("deploy.restored", None),
    ]  # fmt: skip
    finalized = written[0][1]
    assert finalized["site"] == SITE and finalized["id"].startswith("evt_")
    assert finalized["data"]["deployId"] == first and finalized["data"]["alias"] == "preview"
    assert finalized["data"]["url"] == f"https://{SITE}.preview.example.org"
    assert finalized["data"]["actor"] == "local-dev"
    assert (
        finalized["data"]["deploy"]["files"] == 2 and len(finalized["data"]["deploy"]["sha"]) == 7
    )
    moved = written[4][1]["data"]
    assert (moved["alias"], moved["deployId"], moved["previousDeployId"]) == (
        "production", first, None
    )  # fmt: skip
    assert written[5][1]["data"]["previousDeployId"] == first
    # the finalized-only hook got the two finalize events and nothing else
    per_hook = api.sql("SELECT subscription_id, count(*) FROM hook_deliveries"
                       " GROUP BY subscription_id")  # fmt: skip
    assert dict(per_hook) == {everything["id"]: 6, finalized_only["id"]: 2}
    # one outbox row per delivery, in the deliveries' FIFO group
    rows = api.sql("SELECT payload FROM outbox WHERE topic = 'hook.delivery' ORDER BY id")
    assert len(rows) == 8
    assert {r[0]["subscription"] for r in rows} == {everything["id"], finalized_only["id"]}


def test_a_site_delete_announces_itself_then_retires_its_hooks(api: Api, site: str) -> None:
    hook = add(api, "http://127.0.0.1:9/all").body
    gone = api.call("DELETE", f"/api/site/{SITE}", token=STAFF)
    assert gone.status in (200, 204), gone.raw
    [(kind, body)] = events_written(api)
    assert kind == "site.deleted" and body["data"] == {"actor": "local-staff", "purged": False}
    # registered again, the slug starts with no webhook, and the old one gets nothing more
    api.register(SITE, ["web"])
    assert api.call("GET", f"/api/site/{SITE}/hooks", token=STAFF).body == []
    api.deploy(SITE)
    assert len(events_written(api)) == 1
    assert api.sql("SELECT retired_at IS NOT NULL FROM hook_subscriptions WHERE id = %s",
                   [hook["id"]]) == [(True,)]  # fmt: skip


def test_a_refused_change_writes_no_event(api: Api, site: str) -> None:
    add(api, "http://127.0.0.1:9/all")
    refused = api.call("POST", f"/api/site/{SITE}/rollback", token=DEV,
                       json_body={"to": "20260101-000000-abcdef0"})  # fmt: skip
    assert refused.status >= 400
    assert events_written(api) == []


# --- deliveries ----------------------------------------------------------------------------------


def test_a_finalize_is_delivered_signed_with_the_secret(
    api: Api, site: str, receiver: Receiver, notify: Notify
) -> None:
    hook = add(api, receiver.url, ["deploy.finalized"]).body
    deploy_id = api.deploy(SITE)
    notify(lambda: len(receiver.received) >= 1)
    [got] = receiver.received
    body = json.loads(got.body)
    assert body["type"] == "deploy.finalized" and body["data"]["deployId"] == deploy_id
    assert got.headers["x-artemis-event"] == "deploy.finalized"
    assert got.headers["x-artemis-delivery"].startswith("dlv_")
    assert got.headers["content-type"] == "application/json"
    signature = got.headers["x-artemis-signature"]
    assert webhook_signature.verify(hook["secret"], signature, got.body, now=int(time.time()))
    assert not webhook_signature.verify(hook["secret"], signature, got.body + b" ",
                                        now=int(time.time()))  # fmt: skip
    [delivery] = deliveries_of(api, hook["id"])
    assert (delivery["state"], delivery["attempts"]) == ("delivered", 1)
    assert delivery["log"][0]["status"] == 200 and "error" not in delivery["log"][0]


def test_a_receiver_failing_three_times_gets_the_event_once_after_four_attempts(
    api: Api, site: str, notify: Notify, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOK_RETRY_BASE", "1s")  # 1 s, 2 s, 4 s between the attempts
    runtime.reset()
    with receiving([500, 500, 500, 200]) as flaky:
        hook = add(api, flaky.url, ["deploy.finalized"]).body
        api.deploy(SITE)
        notify(lambda: deliveries_of(api, hook["id"])[0]["state"] != "pending", timeout=60)
        arrived = flaky.received
    assert len(arrived) == 4
    assert len({r.headers["x-artemis-delivery"] for r in arrived}) == 1  # one id on every retry
    assert len({r.body for r in arrived}) == 1  # the same bytes
    gaps = [b.at - a.at for a, b in itertools.pairwise(arrived)]
    assert gaps[0] >= 0.8 and gaps[2] >= 3.0  # backed off, exponentially
    [delivery] = deliveries_of(api, hook["id"])
    assert (delivery["state"], delivery["attempts"]) == ("delivered", 4)
    assert [a.get("status") for a in delivery["log"]] == [500, 500, 500, 200]
    assert [a["attempt"] for a in delivery["log"]] == [1, 2, 3, 4]
    assert delivery["log"][0]["error"] == "status 500"


def test_a_delivery_past_its_window_is_recorded_failed_and_dead_lettered(
    api: Api, site: str, notify: Notify, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOK_RETRY_BASE", "1s")
    monkeypatch.setenv("HOOK_RETRY_WINDOW", "2s")
    runtime.reset()
    dlq = api.rt.settings.notifications_dlq_url
    assert dlq
    api.rt.sqs.purge_queue(QueueUrl=dlq)
    with receiving([503]) as down:
        hook = add(api, down.url, ["deploy.finalized"]).body
        api.deploy(SITE)
        notify(lambda: deliveries_of(api, hook["id"])[0]["state"] == "failed", timeout=60)
    [delivery] = deliveries_of(api, hook["id"])
    assert delivery["attempts"] >= 2 and delivery["lastError"] == "status 503"
    assert "finishedAt" in delivery
    copies = api.rt.sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10,
                                        MessageAttributeNames=["All"], WaitTimeSeconds=1)  # fmt: skip
    errors = [m["MessageAttributes"]["error"]["StringValue"] for m in copies.get("Messages", [])]
    assert any(delivery["id"] in e and "status 503" in e for e in errors), errors


def test_ping_and_redeliver_go_through_the_same_delivery(
    api: Api, site: str, receiver: Receiver, notify: Notify
) -> None:
    hook = add(api, receiver.url, ["site.deleted"]).body
    pinged = api.call("POST", f"/api/site/{SITE}/hooks/{hook['id']}/ping", token=DEV)
    assert pinged.status == 202 and pinged.body["status"] == "queued"
    assert [row[1] for row in audit_of(api, pinged)] == ["site.hook.ping"]
    notify(lambda: len(receiver.received) >= 1)
    first = receiver.received[0]
    assert json.loads(first.body)["type"] == "ping"
    assert first.headers["x-artemis-delivery"] == pinged.body["deliveryId"]
    again = api.call(
        "POST", f"/api/site/{SITE}/hooks/{hook['id']}/deliveries/{pinged.body['deliveryId']}"
        "/redeliver", token=DEV,
    )  # fmt: skip
    assert again.status == 202, again.raw
    notify(lambda: len(receiver.received) >= 2)
    second = receiver.received[1]
    assert second.body == first.body
    assert second.headers["x-artemis-delivery"] == first.headers["x-artemis-delivery"]
    [delivery] = deliveries_of(api, hook["id"])
    assert delivery["attempts"] == 2 and delivery["state"] == "delivered"
    unknown = api.call(
        "POST", f"/api/site/{SITE}/hooks/{hook['id']}/deliveries/dlv_{'0' * 20}/redeliver",
        token=DEV,
    )  # fmt: skip
    assert (unknown.status, unknown.code) == (404, "delivery_not_found")


def test_a_removed_hook_gets_nothing_more(
    api: Api, site: str, receiver: Receiver, notify: Notify
) -> None:
    hook = add(api, receiver.url, ["deploy.finalized"]).body
    other = add(api, receiver.url.replace("/hook", "/other"), ["deploy.finalized"]).body
    api.deploy(SITE)
    assert api.call("DELETE", f"/api/site/{SITE}/hooks/{hook['id']}", token=DEV).status == 200
    notify(lambda: any(r.path == "/other" for r in receiver.received))
    settle = time.monotonic() + 3  # the removed hook's message is received and dropped
    notify(lambda: time.monotonic() > settle)
    assert [r.path for r in receiver.received] == ["/other"]
    assert api.sql("SELECT count(*) FROM hook_deliveries WHERE subscription_id = %s",
                   [hook["id"]]) == [(0,)]  # fmt: skip
    assert deliveries_of(api, other["id"])[0]["state"] == "delivered"
