"""The registry snapshot: slug → teams, a cache over the sites table that every authorization
decision reads.

The snapshot is rebuilt from Postgres when it is older than 60 s, and at once in the
environment that changed the registry. A failed rebuild keeps the previous snapshot.

A refusal is never decided on the snapshot alone: when it does not grant (the site is unknown,
or none of its cached teams has the caller), the gate reads that one slug through to Postgres
(`read_through`), so a site registered a moment ago in another environment works at once. The
read-through is single-flight per slug, a slug read in the last READ_THROUGH_QUIET_SECONDS is
answered from the snapshot, and each environment makes at most READ_THROUGH_BURST reads plus
READ_THROUGH_PER_SECOND a second: a flood of unknown slugs costs a bounded number of queries
and is refused from the snapshot beyond that.

What the snapshot grants it keeps granting until it is rebuilt: a team removed from a site (or
a removed site) stops authorizing within SNAPSHOT_MAX_AGE_SECONDS in every environment, at once
in the environment that made the change.

It lives beside the sites repository, below the services, so the per-environment wiring
(`artemis.runtime`) can hold one without importing a service.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from artemis import site_names
from artemis.db import sites as sites_db
from artemis.db.connection import Database
from artemis.errors import DependencyError
from artemis.github import _SingleFlight
from artemis.keys import Slug
from artemis.observability import logger

SNAPSHOT_MAX_AGE_SECONDS = 60.0
READ_THROUGH_QUIET_SECONDS = 1.0  # a slug read through this recently is answered from memory
READ_THROUGH_BURST = 20  # read-throughs an idle environment may make at once …
READ_THROUGH_PER_SECOND = 5.0  # … and the sustained rate after that
_RECENT_MAX = 4096  # slugs remembered for the quiet window (older entries are dropped first)


class RegistrySnapshot:
    def __init__(
        self, db: Database, *, max_age: float = SNAPSHOT_MAX_AGE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:  # fmt: skip
        self._db = db
        self._max_age = max_age
        self._clock = clock
        self._teams: dict[str, list[str]] | None = None
        self._built_at = 0.0
        self._lock = threading.Lock()
        self._flight = _SingleFlight()
        self._read_at: dict[str, float] = {}  # slug → when it was last read through
        self._tokens = float(READ_THROUGH_BURST)
        self._tokens_at = clock()
        self.read_throughs = 0  # queries made (tests and metrics read it)

    def teams(self, slug: str) -> list[str]:
        return list(self._current().get(slug, []))

    def read_through(self, slug: str) -> list[str]:
        """`slug`'s teams as Postgres has them now, for a gate the snapshot did not grant; the
        snapshot's entry is updated with the answer. Concurrent calls for one slug share one
        query. Within the quiet window after a read, or beyond the rate bound, the snapshot's
        teams are returned without a query."""
        cached = self.teams(slug)
        if not site_names.is_slug(slug, frozenset()):  # never registered: no query (nor a NUL sent)
            return cached
        with self._lock:
            if self._recent(slug, self._clock()):
                return self._known(slug, cached)
        return self._flight.do(slug, lambda: self._read_one(slug, cached))

    def _known(self, slug: str, cached: list[str]) -> list[str]:
        """The snapshot's entry now (a read-through may have updated it); hold `_lock`."""
        return list(self._teams.get(slug, [])) if self._teams is not None else cached

    def _read_one(self, slug: str, cached: list[str]) -> list[str]:
        with self._lock:
            now = self._clock()
            if self._recent(slug, now):  # a flight for this slug just ended
                return self._known(slug, cached)
            if not self._take_token(now):
                logger.warning(
                    "registry read-through over its rate bound; refusing", extra={"slug": slug}
                )
                return cached
            built_at = self._built_at
            self.read_throughs += 1
        # The quiet window starts when the read ends, not when it starts: a caller arriving
        # meanwhile joins the flight and gets its answer instead of the stale snapshot.
        try:
            with self._db.transaction() as conn:
                row = sites_db.get(conn, Slug(slug))
        except Exception as err:
            with self._lock:
                self._remember(slug, self._clock())
            raise DependencyError("registry_read_failed") from err
        teams = list(row.teams) if row is not None else []
        with self._lock:
            self._remember(slug, self._clock())
            # A rebuild that finished meanwhile read the table later than we did: keep its answer.
            if self._teams is not None and self._built_at == built_at:
                if teams:
                    self._teams[slug] = list(teams)
                else:
                    self._teams.pop(slug, None)
        return teams

    def _recent(self, slug: str, now: float) -> bool:
        read_at = self._read_at.get(slug)
        return read_at is not None and now - read_at < READ_THROUGH_QUIET_SECONDS

    def _take_token(self, now: float) -> bool:
        elapsed = max(0.0, now - self._tokens_at)
        self._tokens = min(
            float(READ_THROUGH_BURST), self._tokens + elapsed * READ_THROUGH_PER_SECOND
        )
        self._tokens_at = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    def _remember(self, slug: str, now: float) -> None:
        if len(self._read_at) >= _RECENT_MAX:
            horizon = now - READ_THROUGH_QUIET_SECONDS
            self._read_at = {k: t for k, t in self._read_at.items() if t > horizon}
            while len(self._read_at) >= _RECENT_MAX:  # all recent: drop the oldest
                del self._read_at[next(iter(self._read_at))]
        self._read_at.pop(slug, None)  # re-insert: the dict stays in read order
        self._read_at[slug] = now

    def all(self) -> dict[str, list[str]]:
        return dict(self._current())

    def invalidate(self) -> None:
        with self._lock:
            self._built_at = -self._max_age

    def age_seconds(self) -> float:
        return self._clock() - self._built_at

    def _current(self) -> dict[str, list[str]]:
        with self._lock:
            if self._teams is None or self._clock() - self._built_at >= self._max_age:
                try:
                    with self._db.transaction() as conn:
                        rows = sites_db.list_all(conn)
                    self._teams = {row.slug: list(row.teams) for row in rows}
                    self._built_at = self._clock()
                except Exception as err:
                    if self._teams is None:
                        raise DependencyError("registry_read_failed") from err
                    logger.exception("registry snapshot rebuild failed; keeping the previous one")
            return self._teams
