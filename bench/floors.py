"""This machine's limit for the durable stages: the same statements bench/durable.py's stages
issue, driven by `pgbench` (a C client) at the same concurrency against the same kind of
database, so each of our figures stands beside what Postgres here can do with no Python in
the way. Used by bench/durable.py; pgbench ships with the Postgres server packages (where it
is missing, `floor` answers None and the JSON says so).

Each floor runs a fixed number of transactions (`-t` per client) with one connection per
client (`-c`, `-j` threads), without vacuum (`-n`), and reads pgbench's tps "without initial
connection time". A statement that writes a key reads it from pgbench's own per-client
variables (`:client_id`) and a random number, so clients do not collide on one row.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

_TPS = re.compile(r"tps = ([0-9.]+) \(without initial connection time\)")

# One transaction of each stage, as the code issues it (bench/durable.py names the code). A
# SQL command may span lines; it ends at its semicolon.
SITE = "'site' || lpad(:s::text, 4, '0') || '.freecode.camp'"
REGISTER = """\
\\set r random(1, 2000000000)
INSERT INTO sites (slug, teams, created_by)
  VALUES ('f' || :client_id || '-' || :r, ARRAY['staff'], 'bench')
  ON CONFLICT (slug) DO NOTHING RETURNING slug, teams, created_at, updated_at, created_by;
"""
DEPLOY_UPSERT = f"""\
\\set s random(0, 499)
\\set r random(1, 2000000000)
INSERT INTO deploys (site, id, mtime, bytes, has_marker, state)
  VALUES ({SITE}, 'f' || :client_id || '-' || :r, now() - make_interval(hours => :s),
          1048576, true, 'active')
  ON CONFLICT (site, id) DO UPDATE SET mtime = EXCLUDED.mtime,
  has_marker = EXCLUDED.has_marker, state = 'active',
  bytes = CASE WHEN EXCLUDED.bytes > 0 THEN EXCLUDED.bytes ELSE deploys.bytes END;
"""  # noqa: S608 - built from this file's constants
OUTBOX_ENQUEUE = f"""\
\\set s random(0, 499)
INSERT INTO outbox (topic, payload)
  VALUES ('site.changed', jsonb_build_object('site', {SITE})) RETURNING id;
"""  # noqa: S608 - built from this file's constants
# The relay's cycle: claim 100 ready rows (SKIP LOCKED, a lease), then mark them published;
# one statement here (the claimed ids cannot cross statements in a pgbench script), so this
# floor is the database's share of a pass with no round trip between the claim and the mark.
CLAIM_AND_MARK = """\
WITH claimed AS (
  UPDATE outbox SET claimed_at = now(), claim_expires_at = now() + interval '300 seconds'
  WHERE id IN (SELECT id FROM outbox WHERE published_at IS NULL
    AND (claim_expires_at IS NULL OR claim_expires_at < now())
    ORDER BY id LIMIT 100 FOR UPDATE SKIP LOCKED)
  RETURNING id)
UPDATE outbox SET published_at = now() WHERE id IN (SELECT id FROM claimed);
"""
# gc-site's plan read for one site: the three statements plan_inputs pipelines.
DEPLOY_COLUMNS = "site, id, mtime, bytes, has_marker, state, alias_released_at"
PLAN_READ = f"""\
\\set s random(0, 499)
SELECT {DEPLOY_COLUMNS} FROM deploys
  WHERE site = ANY(ARRAY[{SITE}]) AND state = 'active';
SELECT site, name, deploy_id, updated_at, updated_by FROM aliases
  WHERE site = ANY(ARRAY[{SITE}]);
SELECT {DEPLOY_COLUMNS} FROM deploys
  WHERE site = ANY(ARRAY[{SITE}]) AND state = 'pending' AND mtime < now() - interval '1 day';
"""  # noqa: S608 - built from this file's constants

# The fleet planner's read: the same three statements for FLEET_SITES sites at once.
FLEET_SITES = 200
FLEET = (  # FLEET_SITES names: :b to :b + 199
    "ARRAY(SELECT 'site' || lpad((g % 500)::text, 4, '0') || '.freecode.camp'"
    " FROM generate_series(:b, :b + 199) g)"
)
PLAN_READ_FLEET = f"""\
\\set b random(0, 499)
SELECT {DEPLOY_COLUMNS} FROM deploys WHERE site = ANY({FLEET}) AND state = 'active';
SELECT site, name, deploy_id, updated_at, updated_by FROM aliases WHERE site = ANY({FLEET});
SELECT {DEPLOY_COLUMNS} FROM deploys
  WHERE site = ANY({FLEET}) AND state = 'pending' AND mtime < now() - interval '1 day';
"""  # noqa: S608 - built from this file's constants
# The relay's session (artemis.db.outbox.RELAY_SESSION), so its floor runs as the relay does.
RELAY_OPTIONS = "-c synchronous_commit=off -c enable_seqscan=off -c enable_bitmapscan=off"


@dataclass(frozen=True)
class Floor:
    ops_per_s: float | None  # None: pgbench is not installed
    transactions: int
    clients: int
    note: str = ""


def pgbench() -> str | None:
    found = shutil.which("pgbench")
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin/pgbench"), reverse=True):
        return str(candidate)
    return None


def floor(
    url: str, script: str, *, transactions: int, clients: int, per_tx: int = 1, options: str = ""
) -> Floor:
    """pgbench `script` against `url`: `transactions` in all over `clients` connections;
    `per_tx` operations per transaction (the claim-and-mark moves 100 rows); `options` are
    session settings (PGOPTIONS)."""
    exe = pgbench()
    if exe is None:
        return Floor(None, 0, clients, "pgbench is not installed on this machine")
    clients = max(1, min(clients, transactions))
    per_client = max(1, transactions // clients)
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
        f.write(script)
        path = f.name
    try:
        done = subprocess.run(  # noqa: S603 - a fixed argv of our own, no shell
            [exe, "-n", "-f", path, "-c", str(clients), "-j", str(clients), "-t",
             str(per_client), url],
            capture_output=True, text=True, timeout=600, check=False,
            env={**os.environ, "PGOPTIONS": options} if options else None,
        )  # fmt: skip
    finally:
        Path(path).unlink(missing_ok=True)
    found = _TPS.search(done.stdout)
    if done.returncode != 0 or found is None:
        return Floor(None, 0, clients, f"pgbench failed: {done.stderr.strip()[-300:]}")
    return Floor(round(float(found.group(1)) * per_tx), per_client * clients, clients)
