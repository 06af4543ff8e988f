"""The embedded bucket outlives its process: MotoServer with a journal replays every S3 write
at the next start, whether the previous server stopped or was killed."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests

from artemis_local.aws import MotoServer

BUCKET = "journaled"


def s3(server: MotoServer) -> Any:
    return boto3.client(
        "s3", endpoint_url=server.url, region_name="us-east-1",
        aws_access_key_id="local", aws_secret_access_key="local",
    )  # fmt: skip


def contents(client: Any) -> dict[str, tuple[bytes, str]]:
    listed = client.list_objects_v2(Bucket=BUCKET).get("Contents", [])
    out = {}
    for obj in listed:
        got = client.get_object(Bucket=BUCKET, Key=obj["Key"])
        out[obj["Key"]] = (got["Body"].read(), got["ContentType"])
    return out


@pytest.fixture
def servers() -> Iterator[list[MotoServer]]:
    started: list[MotoServer] = []
    yield started
    for server in started:
        server.stop()


def write_scene(client: Any) -> None:
    client.create_bucket(Bucket=BUCKET)
    client.put_object(Bucket=BUCKET, Key="site/index.html", Body=b"<h1>hi</h1>",
                      ContentType="text/html")  # fmt: skip
    client.put_object(Bucket=BUCKET, Key="site/big.bin", Body=os.urandom(3 * 1024 * 1024))
    client.put_object(Bucket=BUCKET, Key="gone/a", Body=b"a")
    client.put_object(Bucket=BUCKET, Key="gone/b", Body=b"b")
    client.delete_object(Bucket=BUCKET, Key="gone/a")
    client.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": "gone/b"}]})
    client.copy_object(Bucket=BUCKET, Key="site/copy.html",
                       CopySource={"Bucket": BUCKET, "Key": "site/index.html"})  # fmt: skip
    post = client.generate_presigned_post(BUCKET, "site/direct.css",
                                          Fields={"Content-Type": "text/css"},
                                          Conditions=[{"Content-Type": "text/css"}])  # fmt: skip
    reply = requests.post(post["url"], data=post["fields"],
                          files={"file": ("direct.css", b"h1{}")}, timeout=30)  # fmt: skip
    assert reply.status_code == 204, reply.text


@pytest.mark.parametrize("ending", ["stop", "kill -9"])
def test_the_bucket_survives_a_restart(
    tmp_path: Path, servers: list[MotoServer], ending: str
) -> None:
    journal = tmp_path / "s3-journal.jsonl"
    first = MotoServer(journal=journal).start()
    servers.append(first)
    write_scene(s3(first))
    before = contents(s3(first))
    assert set(before) == {"site/index.html", "site/big.bin", "site/copy.html", "site/direct.css"}
    if ending == "stop":
        first.stop()
    else:
        assert first._proc is not None
        os.kill(first._proc.pid, signal.SIGKILL)
        first._proc.wait()
        first._proc = None
    second = MotoServer(journal=journal).start()
    servers.append(second)
    assert contents(s3(second)) == before
    # It keeps journaling: a third start sees the second's writes too.
    s3(second).put_object(Bucket=BUCKET, Key="site/later.txt", Body=b"later")
    second.stop()
    third = MotoServer(journal=journal).start()
    servers.append(third)
    assert contents(s3(third))["site/later.txt"] == (b"later", "binary/octet-stream")


def test_a_torn_last_entry_is_dropped(tmp_path: Path, servers: list[MotoServer]) -> None:
    journal = tmp_path / "s3-journal.jsonl"
    first = MotoServer(journal=journal).start()
    servers.append(first)
    client = s3(first)
    client.create_bucket(Bucket=BUCKET)
    client.put_object(Bucket=BUCKET, Key="kept", Body=b"kept")
    first.stop()
    with journal.open("ab") as file:
        file.write(b'{"REQUEST_METHOD": "PUT", "PATH_INFO": "/journaled/torn", "bo')
    second = MotoServer(journal=journal).start()
    servers.append(second)
    client = s3(second)
    client.put_object(Bucket=BUCKET, Key="after", Body=b"after")
    second.stop()
    third = MotoServer(journal=journal).start()
    servers.append(third)
    assert set(contents(s3(third))) == {"kept", "after"}
