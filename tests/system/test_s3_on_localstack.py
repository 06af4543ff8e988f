"""Bucket semantics moto does not honour, on LocalStack: presigned POST policy enforcement
(exact key, content-length-range, signature) and the move primitive on a real S3 API."""

import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from artemis.storage.s3 import Bucket, make_s3_client


@pytest.fixture
def ls_bucket(localstack_url: str) -> Bucket:
    client = make_s3_client(localstack_url, "us-east-1")
    name = f"sys-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    return Bucket(client, name)


def post_file(post: Any, body: bytes, **field_overrides: str) -> requests.Response:
    fields = {**post.fields, **field_overrides}
    return requests.post(post.url, data=fields, files={"file": ("f", body)}, timeout=30)


def test_presigned_post_accepts_a_file_within_the_limit(ls_bucket: Bucket) -> None:
    post = ls_bucket.presigned_post(
        "www/deploys/d1/a.bin",
        max_bytes=1024,
        expires_in=300,
        content_type="application/octet-stream",
    )
    resp = post_file(post, b"x" * 1024)
    assert resp.status_code in (200, 201, 204), resp.text
    assert ls_bucket.get("www/deploys/d1/a.bin") == b"x" * 1024


def test_presigned_post_refuses_a_file_over_the_limit(ls_bucket: Bucket) -> None:
    post = ls_bucket.presigned_post("www/deploys/d1/a.bin", max_bytes=1024, expires_in=300)
    resp = post_file(post, b"x" * 1025)
    assert resp.status_code == 400
    assert "EntityTooLarge" in resp.text
    assert ls_bucket.head("www/deploys/d1/a.bin") is None


def test_presigned_post_refuses_another_key(ls_bucket: Bucket) -> None:
    post = ls_bucket.presigned_post("www/deploys/d1/a.bin", max_bytes=1024, expires_in=300)
    resp = post_file(post, b"x", key="www/production")
    assert resp.status_code == 403
    assert ls_bucket.head("www/production") is None


def test_move_on_a_real_s3_api(ls_bucket: Bucket) -> None:
    keys = [f"www/deploys/d1/f{i:04d}" for i in range(1500)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: ls_bucket.put(k, k.encode(), "text/plain"), keys))
    assert ls_bucket.move_prefix("www/deploys/d1/", "_trash/www/d1/") == 1500
    assert ls_bucket.list_keys("www/deploys/d1/") == []
    assert len(ls_bucket.list_keys("_trash/www/d1/")) == 1500
    assert ls_bucket.move_prefix("www/deploys/d1/", "_trash/www/d1/") == 0


def _sha(body: bytes) -> bytes:
    import hashlib

    return hashlib.sha256(body).digest()


def test_presigned_post_with_a_digest_accepts_only_those_bytes(ls_bucket: Bucket) -> None:
    """moto ignores the POST's checksum fields; S3 (here LocalStack) computes the body's SHA-256
    and refuses a body that is not the one the policy binds, so a lying client cannot get other
    bytes stored under a digest the content index records."""
    key = "www/deploys/d1/app.js"
    post = ls_bucket.presigned_post(key, max_bytes=1024, expires_in=300, sha256=_sha(b"good"))
    resp = post_file(post, b"evil")
    assert resp.status_code == 400, resp.text
    # LocalStack names the checksum (AWS answers BadDigest); the same field then accepts the
    # right bytes below, so it is the mismatch that was refused, not the field's form.
    assert "x-amz-checksum-sha256" in resp.text or "BadDigest" in resp.text, resp.text
    assert ls_bucket.head(key) is None
    resp = post_file(post, b"good")
    assert resp.status_code in (200, 201, 204), resp.text
    assert ls_bucket.get(key) == b"good"


def test_presigned_post_refuses_a_swapped_digest_field(ls_bucket: Bucket) -> None:
    """The checksum field is bound by the signed policy: a client cannot replace it with the
    digest of the bytes it would rather send."""
    import base64

    key = "www/deploys/d1/app.js"
    post = ls_bucket.presigned_post(key, max_bytes=1024, expires_in=300, sha256=_sha(b"good"))
    swapped = base64.b64encode(_sha(b"evil")).decode()
    resp = post_file(post, b"evil", **{"x-amz-checksum-sha256": swapped})
    assert resp.status_code == 403, resp.text
    assert ls_bucket.head(key) is None


def test_a_verified_copy_refuses_bytes_that_are_not_the_digest(ls_bucket: Bucket) -> None:
    ls_bucket.put("www/deploys/d1/a.js", b"one", "text/javascript")
    assert ls_bucket.copy_verified(
        "www/deploys/d1/a.js", "www/deploys/d2/a.js", _sha(b"one"), "text/javascript"
    )
    assert ls_bucket.get("www/deploys/d2/a.js") == b"one"
    assert not ls_bucket.copy_verified(
        "www/deploys/d1/a.js", "www/deploys/d2/b.js", _sha(b"two"), "text/javascript"
    )
    assert ls_bucket.head("www/deploys/d2/b.js") is None
    assert not ls_bucket.copy_verified(
        "www/deploys/d1/gone.js", "www/deploys/d2/c.js", _sha(b"one"), "text/javascript"
    )
    assert ls_bucket.head("www/deploys/d2/c.js") is None
