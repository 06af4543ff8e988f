"""The fast path (issue 16 item 5): the API sends the outbox rows a request committed as soon as
the request is done, with the relay's claim, message group and deduplication id, and the relay
stays the backstop. Real Postgres and moto FIFO queues; the API handler runs in-process with a
sample event, as Lambda calls it."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from artemis import runtime
from artemis.config import load_settings
from artemis.db import outbox
from artemis.jobs.relay import drain, publish_now
from artemis.keys import Dirname
from artemis.queue import ClaimedMessage, SiteEventsQueue
from artemis.runtime import Runtime
from artemis_local.fake_github import FakeGitHub
from artemis_local.functions import LocalContext, load_handler
from tests.conftest import REPO_ROOT, base_env, sqs_client
from tests.integration.test_relay import Queue, soon


@pytest.fixture
def queues(moto_url: str) -> tuple[Queue, Queue]:
    client = sqs_client(moto_url)

    def fifo(kind: str) -> Queue:
        url = client.create_queue(
            QueueName=f"{kind}-{uuid.uuid4().hex[:12]}.fifo",
            Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "false"},
        )["QueueUrl"]
        return Queue(client, url)

    return fifo("site-events"), fifo("notifications")


@pytest.fixture
def env(
    database_url: str, moto_url: str, queues: tuple[Queue, Queue], monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    values = base_env(
        DATABASE_URL=database_url, AWS_ENDPOINT_URL=moto_url,
        SITE_EVENTS_QUEUE_URL=queues[0].url, NOTIFICATIONS_QUEUE_URL=queues[1].url,
    )  # fmt: skip
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    runtime.reset()
    yield values
    runtime.reset()


@pytest.fixture
def rt(env: dict[str, str]) -> Runtime:
    return Runtime(load_settings(env))


def publisher(rt: Runtime) -> Any:
    return SiteEventsQueue.of(rt).publisher()


def unpublished(rt: Runtime) -> list[int]:
    with rt.db.transaction() as conn:
        got = conn.execute("SELECT id FROM outbox WHERE published_at IS NULL ORDER BY id")
        return [r[0] for r in got.fetchall()]


def call(method: str, path: str, body: Any = None) -> dict[str, Any]:
    """One request through the real API handler, in process, as the local staff user."""
    event = json.loads((REPO_ROOT / "events" / "api-healthz.json").read_text())
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["requestContext"]["http"]["method"] = method
    event["headers"] = {"authorization": "Bearer local-staff-token",
                        "content-type": "application/json"}  # fmt: skip
    event["body"] = None if body is None else json.dumps(body)
    answer: dict[str, Any] = load_handler("api")(event, LocalContext("api", timeout_ms=29_000))
    return answer


def test_rows_a_transaction_wrote_are_published_at_once_and_marked(
    rt: Runtime, queues: tuple[Queue, Queue]
) -> None:
    with outbox.collecting() as written, rt.db.transaction() as conn:
        outbox.enqueue_site_changed(conn, Dirname("a.example.org"))
        outbox.enqueue(conn, "hook.delivery", {"site": "a.example.org",
                                               "subscription": "hk_" + "0" * 20,
                                               "delivery": "dlv_" + "1" * 20})  # fmt: skip
    result = publish_now(rt, publisher(rt), written)
    assert (result.claimed, result.published, result.errors) == (2, 2, [])
    assert unpublished(rt) == []
    site_events, notifications = (q.drain_messages() for q in queues)
    assert [json.loads(m["Body"])["topic"] for m in site_events] == ["site.changed"]
    assert [m["Attributes"]["MessageDeduplicationId"] for m in site_events] == [str(written[0])]
    [hook] = notifications  # the delivery went to its own queue, in its webhook's group
    assert hook["Attributes"]["MessageGroupId"] == "hook.hk_" + "0" * 20
    assert json.loads(hook["Body"])["claimed_at"] is not None


def test_a_crash_between_commit_and_send_loses_nothing(
    rt: Runtime, queues: tuple[Queue, Queue]
) -> None:
    """The request committed and died before its fast path ran: the relay publishes the rows;
    the fast path, had it run late, would find them published and send nothing twice."""
    with outbox.collecting() as written, rt.db.transaction() as conn:
        outbox.enqueue_site_changed(conn, Dirname("b.example.org"))
    # ... crash: no publish_now ...
    assert unpublished(rt) == written
    done = drain(rt, publisher(rt), deadline=soon())
    assert done.published == 1 and unpublished(rt) == []
    late = publish_now(rt, publisher(rt), written)
    assert late.claimed == 0
    assert len(queues[0].drain_messages()) == 1


def test_a_send_the_fast_path_could_not_mark_is_deduplicated_by_the_queue(
    rt: Runtime, queues: tuple[Queue, Queue]
) -> None:
    """Sent but not marked (a crash after the send): the relay sends the row again after the
    lease, with the same deduplication id, and the queue drops the copy."""
    with outbox.collecting() as written, rt.db.transaction() as conn:
        outbox.enqueue_site_changed(conn, Dirname("c.example.org"))
    with rt.db.session() as conn:
        rows, stamp = outbox.claim_ids_stamped(conn, written, ttl_seconds=0.0)
    claimed = [ClaimedMessage(m.id, m.topic, m.payload, stamp) for m in rows]
    sent = publisher(rt).publish(claimed)
    assert sent.published == written  # ... crash before the mark; the lease runs out at once
    done = drain(rt, publisher(rt), deadline=soon())
    assert done.published == 1 and unpublished(rt) == []
    assert len(queues[0].drain_messages()) == 1


def test_the_api_sends_what_a_request_committed_before_answering(
    env: dict[str, str], rt: Runtime, queues: tuple[Queue, Queue], fake: FakeGitHub,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv("GH_API_BASE", fake.url)
    monkeypatch.setenv("HOOK_ALLOW_LOOPBACK_HTTP", "true")
    runtime.reset()
    slug = f"fast-{uuid.uuid4().hex[:6]}"
    assert call("POST", "/api/site/register", {"slug": slug})["statusCode"] == 201
    added = call("POST", f"/api/site/{slug}/hooks",
                 {"url": "http://127.0.0.1:9/x", "events": ["deploy.finalized"]})  # fmt: skip
    assert added["statusCode"] == 201, added
    hook = json.loads(added["body"])
    pinged = call("POST", f"/api/site/{slug}/hooks/{hook['id']}/ping")
    assert pinged["statusCode"] == 202, pinged
    # answered only after the ping's row was sent and marked: no relay ran
    assert unpublished(rt) == []
    [message] = queues[1].drain_messages()
    assert (
        json.loads(message["Body"])["payload"]["delivery"]
        == json.loads(pinged["body"])["deliveryId"]
    )


def test_rows_of_a_rolled_back_transaction_are_not_sent(
    rt: Runtime, queues: tuple[Queue, Queue]
) -> None:
    with outbox.collecting() as written, pytest.raises(RuntimeError), rt.db.transaction() as conn:
        outbox.enqueue_site_changed(conn, Dirname("d.example.org"))
        raise RuntimeError("the change failed")
    assert len(written) == 1
    result = publish_now(rt, publisher(rt), written)
    assert (result.claimed, result.published) == (0, 0)
    assert queues[0].drain_messages() == []
