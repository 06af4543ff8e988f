"""Move throughput of Bucket.move_prefix (16 parallel copies, batched deletes) against an S3
API: AWS_ENDPOINT_URL (e.g. LocalStack), else an in-process moto server. Prints objects/s for
the move and the calls it made. For scale: CopyObject alone on the emulators ≈340-440/s
(16 threads).

    .venv/bin/python bench/s3_move.py [objects]
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from artemis.storage.s3 import Bucket, make_s3_client

OBJECTS = int(sys.argv[1]) if len(sys.argv) > 1 else 2000


def main() -> None:
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    server = None
    if not endpoint:
        from artemis_local.aws import MotoServer

        server = MotoServer().start()
        endpoint = server.url
    try:
        client = make_s3_client(endpoint, "us-east-1")
        bucket = Bucket(client, f"bench-{uuid.uuid4().hex[:12]}")
        client.create_bucket(Bucket=bucket.name)
        keys = [f"www/deploys/d1/f{i:06d}.txt" for i in range(OBJECTS)]
        started = time.perf_counter()
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda k: bucket.put(k, b"x" * 4096, "text/plain"), keys))
        put_s = time.perf_counter() - started
        calls: Counter[str] = Counter()

        def record(model: Any, **_: Any) -> None:
            calls[model.name] += 1

        client.meta.events.register("before-call.s3", record)
        started = time.perf_counter()
        moved = bucket.move_prefix("www/deploys/d1/", "_trash/www/d1/")
        move_s = time.perf_counter() - started
        assert moved == OBJECTS
        print(f"s3 move against {'moto' if server else endpoint}: {OBJECTS} objects")
        print(f"  put (16 threads): {OBJECTS / put_s:,.0f} objects/s")
        print(f"  move: {move_s:.2f} s, {OBJECTS / move_s:,.0f} objects/s; calls {dict(calls)}")
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
