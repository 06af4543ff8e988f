"""Trust rules (`trust_rules`): per registered site, keyed by slug like `sites`; the rows
cascade away with the site's registry row."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import Connection

from artemis.keys import Slug
from artemis.trust_rules import RuleSpec, TrustRule


@dataclass(frozen=True)
class TrustRuleRow:
    site: str
    rule: TrustRule
    created_at: datetime
    created_by: str


_COLUMNS = (
    "site, id, repository, repository_id, workflow, environment, ref, aliases, created_at,"
    " created_by"
)


class SiteMissing(Exception):
    """The site is not registered (or was deregistered meanwhile)."""


class RuleLimit(Exception):
    """The site holds as many rules as it may."""


class RuleDuplicate(Exception):
    """An identical rule exists already; `rule_id` is its id."""

    def __init__(self, rule_id: str) -> None:
        super().__init__(rule_id)
        self.rule_id = rule_id


def _row(values: tuple[Any, ...]) -> TrustRuleRow:
    site, rule_id, repo, repo_id, workflow, environment, ref, aliases, at, by = values
    rule = TrustRule(rule_id, repo, repo_id, workflow, environment, ref, tuple(aliases))
    return TrustRuleRow(site=site, rule=rule, created_at=at, created_by=by)


def for_site(conn: Connection, site: Slug) -> list[TrustRuleRow]:
    """Oldest first: the order matching tries them in."""
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM trust_rules WHERE site = %s ORDER BY created_at, id", [site]
    ).fetchall()
    return [_row(r) for r in rows]


def insert(
    conn: Connection, site: Slug, rule_id: str, spec: RuleSpec, created_by: str, *, limit: int
) -> TrustRuleRow:
    """Lock the site's registry row (so concurrent adds count one after another and a
    concurrent delete waits), refuse past `limit` or a duplicate, insert."""
    if conn.execute("SELECT 1 FROM sites WHERE slug = %s FOR UPDATE", [site]).fetchone() is None:
        raise SiteMissing(site)
    existing = for_site(conn, site)
    for row in existing:
        if _same(row.rule, spec):
            raise RuleDuplicate(row.rule.id)
    if len(existing) >= limit:
        raise RuleLimit(site)
    inserted = conn.execute(
        "INSERT INTO trust_rules (id, site, repository, repository_id, workflow, environment,"
        " ref, aliases, created_by) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
        f" RETURNING {_COLUMNS}",
        [rule_id, site, spec.repository, spec.repository_id, spec.workflow, spec.environment,
         spec.ref, list(spec.aliases), created_by],
    ).fetchone()  # fmt: skip
    assert inserted is not None
    return _row(inserted)


def _same(rule: TrustRule, spec: RuleSpec) -> bool:
    return (
        rule.repository_id == spec.repository_id
        and rule.repository.lower() == spec.repository.lower()
        and rule.workflow == spec.workflow
        and rule.environment == spec.environment
        and rule.ref == spec.ref
        and set(rule.aliases) == set(spec.aliases)
    )


def delete(conn: Connection, site: Slug, rule_id: str) -> TrustRuleRow | None:
    row = conn.execute(
        f"DELETE FROM trust_rules WHERE site = %s AND id = %s RETURNING {_COLUMNS}",
        [site, rule_id],
    ).fetchone()
    return None if row is None else _row(row)


def exists(conn: Connection, site: Slug, rule_id: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM trust_rules WHERE site = %s AND id = %s", [site, rule_id]
    ).fetchone()
    return row is not None
