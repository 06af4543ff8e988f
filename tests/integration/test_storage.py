"""The S3 adapter against moto's S3 (semantics moto gets wrong live in tests/system)."""

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from botocore.exceptions import ClientError

from artemis.errors import StorageError
from artemis.keys import Dirname
from artemis.storage.objects import MoveIncomplete
from artemis.storage.s3 import Bucket


def count_calls(bucket: Bucket) -> Counter[str]:
    calls: Counter[str] = Counter()

    def record(model: Any, **_: Any) -> None:
        calls[model.name] += 1

    bucket.client.meta.events.register("before-call.s3", record)
    return calls


def put_many(bucket: Bucket, prefix: str, n: int) -> list[str]:
    keys = [f"{prefix}f{i:05d}.txt" for i in range(n)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: bucket.put(k, k.encode(), "text/plain"), keys))
    return keys


def test_put_get_head(bucket: Bucket) -> None:
    bucket.put("www/deploys/d1/index.html", b"<h1>hi</h1>", "text/html")
    assert bucket.get("www/deploys/d1/index.html") == b"<h1>hi</h1>"
    assert bucket.get("www/deploys/d1/missing") is None
    info = bucket.head("www/deploys/d1/index.html")
    assert info is not None and info.size == 11
    assert bucket.head("nope") is None
    head = bucket.client.head_object(Bucket=bucket.name, Key="www/deploys/d1/index.html")
    assert head["ContentType"] == "text/html"


def test_sha256_of_streams_the_bytes_in_chunks(
    bucket: Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hashlib

    from artemis.storage import s3

    monkeypatch.setattr(s3, "HASH_CHUNK", 7)  # several reads for one object
    body = bytes(range(256)) * 3
    bucket.put("www/deploys/1/big.bin", body, "application/octet-stream")
    assert bucket.sha256_of("www/deploys/1/big.bin") == (hashlib.sha256(body).digest(), len(body))
    assert bucket.sha256_of("www/deploys/1/missing.bin") is None


def test_alias_reads_trim_and_treat_empty_as_absent(bucket: Bucket) -> None:
    assert bucket.get_alias("www/production") is None
    bucket.put_alias("www/production", "20260420-141522-abc1234")
    raw = bucket.client.get_object(Bucket=bucket.name, Key="www/production")
    assert raw["Body"].read() == b"20260420-141522-abc1234"  # no newline, bare id
    assert raw["ContentType"] == "text/plain"
    bucket.put("www/preview", b"  d2\n", "text/plain")
    assert bucket.get_alias("www/preview") == "d2"
    bucket.put("www/preview", b" \n", "text/plain")
    assert bucket.get_alias("www/preview") is None


def test_listing_is_paginated_at_1000(bucket: Bucket) -> None:
    put_many(bucket, "www/deploys/d1/", 2100)
    calls = count_calls(bucket)
    pages = list(bucket.list_pages("www/deploys/d1/"))
    assert [len(p) for p in pages] == [1000, 1000, 100]
    assert calls["ListObjectsV2"] == 3
    assert bucket.prefix_bytes("www/deploys/d1/") == sum(
        len(f"www/deploys/d1/f{i:05d}.txt") for i in range(2100)
    )
    assert bucket.has_prefix("www/deploys/d1/") and not bucket.has_prefix("www/deploys/d2/")


def test_list_sites_skips_reserved_names(bucket: Bucket) -> None:
    for key in ["www/production", "docs/deploys/d/index.html", "_trash/old/x", "_artemis_probe/x"]:
        bucket.put(key, b"x", "text/plain")
    assert sorted(bucket.list_sites()) == ["docs", "www"]


def test_moving_2500_objects_uses_three_delete_calls(bucket: Bucket) -> None:
    keys = put_many(bucket, "www/deploys/d1/", 2500)
    calls = count_calls(bucket)
    moved = bucket.move_prefix("www/deploys/d1/", "_trash/www/d1/")
    assert moved == 2500
    assert calls["DeleteObjects"] == 3
    assert calls["CopyObject"] == 2500
    assert calls["DeleteObject"] == 0 and calls["HeadObject"] == 0
    assert bucket.list_keys("www/deploys/d1/") == []
    moved_keys = {o.key for o in bucket.list_keys("_trash/www/d1/")}
    assert moved_keys == {k.replace("www/deploys/d1/", "_trash/www/d1/") for k in keys}
    assert bucket.get("_trash/www/d1/f00042.txt") == b"www/deploys/d1/f00042.txt"


def test_moving_an_already_moved_prefix_is_a_no_op(bucket: Bucket) -> None:
    put_many(bucket, "www/deploys/d1/", 5)
    bucket.move_prefix("www/deploys/d1/", "_trash/www/d1/")
    calls = count_calls(bucket)
    assert bucket.move_prefix("www/deploys/d1/", "_trash/www/d1/") == 0
    assert calls["CopyObject"] == 0 and calls["DeleteObjects"] == 0
    assert len(bucket.list_keys("_trash/www/d1/")) == 5


def test_move_keeps_content_type(bucket: Bucket) -> None:
    bucket.put("www/deploys/d1/index.html", b"<p>", "text/html")
    bucket.move_prefix("www/deploys/d1/", "_trash/www/d1/")
    head = bucket.client.head_object(Bucket=bucket.name, Key="_trash/www/d1/index.html")
    assert head["ContentType"] == "text/html"


def test_a_failed_copy_loses_nothing_and_a_rerun_finishes(bucket: Bucket) -> None:
    put_many(bucket, "www/deploys/d1/", 30)
    failing = {"www/deploys/d1/f00007.txt"}

    def fail_one(params: dict[str, Any], **_: Any) -> None:
        if params.get("Key") == "_trash/www/d1/f00007.txt" and failing:
            raise ClientError(
                {"Error": {"Code": "InternalError", "Message": "injected"}}, "CopyObject"
            )

    bucket.client.meta.events.register("provide-client-params.s3.CopyObject", fail_one)
    with pytest.raises(MoveIncomplete) as info:
        bucket.move_prefix("www/deploys/d1/", "_trash/www/d1/")
    assert info.value.moved == 29
    assert [o.key for o in bucket.list_keys("www/deploys/d1/")] == ["www/deploys/d1/f00007.txt"]
    failing.clear()
    assert bucket.move_prefix("www/deploys/d1/", "_trash/www/d1/") == 1
    assert len(bucket.list_keys("_trash/www/d1/")) == 30


def test_move_refuses_prefixes_without_slash_or_nested(bucket: Bucket) -> None:
    with pytest.raises(ValueError, match="end with /"):
        bucket.move_prefix("www", "_trash/www/")
    with pytest.raises(ValueError, match="nest"):
        bucket.move_prefix("www/", "www/trash/")


def test_move_object_and_delete_prefix(bucket: Bucket) -> None:
    bucket.put_alias("www/production", "d1")
    assert bucket.move_object("www/production", "_trash/www/production")
    assert not bucket.move_object("www/production", "_trash/www/production")
    assert bucket.get_alias("_trash/www/production") == "d1"
    put_many(bucket, "_trash/www/d1/", 1200)
    calls = count_calls(bucket)
    assert bucket.delete_prefix("_trash/www/") == 1201
    assert calls["DeleteObjects"] == 2
    assert bucket.delete_prefix("_trash/www/") == 0


def test_presigned_post_names_the_exact_key(bucket: Bucket) -> None:
    post = bucket.presigned_post(
        "www/deploys/d1/big.bin",
        max_bytes=1024,
        expires_in=600,
        content_type="application/octet-stream",
    )
    assert post.fields["key"] == "www/deploys/d1/big.bin"
    assert post.fields["Content-Type"] == "application/octet-stream"
    assert "policy" in post.fields
    import base64
    import json

    policy = json.loads(base64.b64decode(post.fields["policy"]))
    assert ["content-length-range", 0, 1024] in policy["conditions"]
    assert {"key": "www/deploys/d1/big.bin"} in policy["conditions"]


def test_unreachable_bucket_maps_to_operation_codes() -> None:
    from artemis.storage.s3 import make_s3_client

    broken = Bucket(make_s3_client("http://127.0.0.1:1", "us-east-1"), "nope")
    calls: list[tuple[Any, str]] = [
        (lambda: broken.put("k", b"", "text/plain"), "r2_put_failed"),
        (lambda: broken.get("k"), "r2_get_failed"),
        (lambda: broken.head("k"), "r2_head_failed"),
        (lambda: broken.list_keys("k/"), "r2_list_failed"),
        (lambda: broken.list_sites(), "r2_list_failed"),
    ]
    for call, code in calls:
        with pytest.raises(StorageError) as info:
            call()
        assert info.value.code == code and info.value.status == 502


def test_site_names_are_dirnames(bucket: Bucket) -> None:
    bucket.put("www.freecode.camp/production", b"d", "text/plain")
    assert bucket.list_sites() == [Dirname("www.freecode.camp")]


def test_g14_moves_copy_in_parallel(bucket: Bucket) -> None:
    """The reference copied one object at a time (≈0.36 objects/s against its store); the move
    keeps up to 16 copies in flight, so its speed follows the store's CopyObject rate."""
    import threading

    put_many(bucket, "www/deploys/d1/", 200)
    in_flight = 0
    peak = 0
    guard = threading.Lock()

    def started(**_: Any) -> None:
        nonlocal in_flight, peak
        with guard:
            in_flight += 1
            peak = max(peak, in_flight)

    def finished(**_: Any) -> None:
        nonlocal in_flight
        with guard:
            in_flight -= 1

    bucket.client.meta.events.register("before-call.s3.CopyObject", started)
    bucket.client.meta.events.register("after-call.s3.CopyObject", finished)
    assert bucket.move_prefix("www/deploys/d1/", "_trash/www/d1/") == 200
    assert peak > 4


def test_put_many_writes_every_item_with_its_content_type_in_parallel(bucket: Bucket) -> None:
    import threading

    items = [(f"www/deploys/d1/f{n:03d}.css", b"x" * n, "text/css") for n in range(100)]
    in_flight = peak = 0
    guard = threading.Lock()

    def started(**_: Any) -> None:
        nonlocal in_flight, peak
        with guard:
            in_flight += 1
            peak = max(peak, in_flight)

    def finished(**_: Any) -> None:
        nonlocal in_flight
        with guard:
            in_flight -= 1

    bucket.client.meta.events.register("before-call.s3.PutObject", started)
    bucket.client.meta.events.register("after-call.s3.PutObject", finished)
    assert bucket.put_many(items) == [True] * len(items)
    assert peak > 1
    assert {o.key: o.size for o in bucket.list_keys("www/deploys/d1/")} == {
        key: len(body) for key, body, _ in items
    }
    head = bucket.client.head_object(Bucket=bucket.name, Key="www/deploys/d1/f007.css")
    assert head["ContentType"] == "text/css"
    assert bucket.put_many([]) == []  # nothing to write is no call at all


def test_put_many_starts_nothing_after_its_stop_time(bucket: Bucket) -> None:
    import time

    items = [(f"www/deploys/d2/f{n:02d}.txt", b"x", "text/plain") for n in range(40)]
    assert bucket.put_many(items, stop_at=time.monotonic() - 1) == [False] * 40
    assert bucket.list_keys("www/deploys/d2/") == []
    assert bucket.put_many(items, stop_at=time.monotonic() + 60) == [True] * 40
    assert len(bucket.list_keys("www/deploys/d2/")) == 40


def test_put_many_fails_as_r2_put_failed_and_stops_starting_puts(bucket: Bucket) -> None:
    items = [(f"www/deploys/d1/f{n:04d}.txt", b"x", "text/plain") for n in range(1000)]
    calls = count_calls(bucket)

    def fail_one(params: dict[str, Any], **_: Any) -> None:
        if params.get("Key") == "www/deploys/d1/f0003.txt":
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "PutObject")

    bucket.client.meta.events.register("provide-client-params.s3.PutObject", fail_one)
    with pytest.raises(StorageError) as info:
        bucket.put_many(items)
    assert (info.value.code, info.value.status) == ("r2_put_failed", 502)
    assert calls["PutObject"] < len(items)  # the puts not yet started were cancelled
