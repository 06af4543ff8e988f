"""Liveness and readiness (Postgres and Redis degrade, the bucket decides: without it nothing
can be served). Probes run concurrently, each bounded by its own timeout."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any, Literal

from artemis.deadlines import Deadline
from artemis.observability import logger
from artemis.runtime import Runtime

PROBE_TIMEOUT_SECONDS = 5.0
ProbeState = Literal["ok", "unreachable", "unconfigured"]


@dataclass(frozen=True)
class Readiness:
    ready: bool
    degraded: bool
    failed_code: str | None = None
    checks: dict[str, ProbeState] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        """The ready answer: `degraded` appears only when a dependency other than the bucket
        is unreachable."""
        return {"ready": True, "checks": self.checks} | (
            {"degraded": True} if self.degraded else {}
        )


def readiness(rt: Runtime, timeout: float = PROBE_TIMEOUT_SECONDS) -> Readiness:
    probes: dict[str, Callable[[], object] | None] = {
        "bucket": rt.bucket.probe,
        "postgres": lambda: rt.db.ping(timeout),
        "redis": rt.redis.ping if rt.redis is not None else None,
    }
    checks: dict[str, ProbeState] = {}
    pool = ThreadPoolExecutor(max_workers=len(probes))
    futures = {name: pool.submit(fn) for name, fn in probes.items() if fn is not None}
    deadline = Deadline.after(timeout)
    for name in probes:
        if name not in futures:
            checks[name] = "unconfigured"
            continue
        try:
            futures[name].result(timeout=deadline.remaining())
            checks[name] = "ok"
        except (FutureTimeout, Exception) as err:  # a probe's failure is a verdict
            logger.warning(
                "readiness probe failed", extra={"probe": name, "error": type(err).__name__}
            )
            checks[name] = "unreachable"
    pool.shutdown(wait=False, cancel_futures=True)  # never wait past the deadline for a hung probe
    if checks["bucket"] != "ok":
        return Readiness(False, False, "r2_unreachable", checks)
    degraded = any(state == "unreachable" for state in checks.values())
    return Readiness(True, degraded, None, checks)
