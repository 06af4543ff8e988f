"""The migration runner on real Postgres: ledger, idempotency, concurrent runners."""

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest

from artemis.db.migrate import default_sql_dir, migrate
from tests.conftest import REPO_ROOT

SQL_FILES = sorted(p.name for p in default_sql_dir().glob("*.sql"))
ADMIN = str(Path(sys.executable).with_name("artemis-admin"))


def ledger(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [
            r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY version")
        ]


def test_sql_dir_is_the_repository_sql_folder() -> None:
    assert default_sql_dir() == REPO_ROOT / "sql"
    assert SQL_FILES[0] == "0001_init.sql"


def test_two_concurrent_admin_migrate_runs_apply_every_file_once(empty_database_url: str) -> None:
    cmd = [ADMIN, "migrate", "--database-url", empty_database_url]
    procs = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    import json

    reports = [json.loads(out) for out, _ in outputs]
    applied = sorted(name for r in reports for name in r["applied"])
    assert applied == SQL_FILES  # each file applied by exactly one runner
    assert ledger(empty_database_url) == SQL_FILES


def test_rerun_is_a_no_op(empty_database_url: str) -> None:
    first = migrate(empty_database_url)
    second = migrate(empty_database_url)
    assert first.applied == SQL_FILES
    assert second.applied == []
    assert second.skipped == SQL_FILES


def test_failed_file_records_nothing_and_rolls_back(
    empty_database_url: str, tmp_path: Path
) -> None:
    (tmp_path / "0001_ok.sql").write_text("CREATE TABLE a (x int);")
    (tmp_path / "0002_bad.sql").write_text("CREATE TABLE b (x int); SELECT * FROM missing_table;")
    with pytest.raises(psycopg.errors.UndefinedTable):
        migrate(empty_database_url, tmp_path)
    assert ledger(empty_database_url) == ["0001_ok.sql"]
    with psycopg.connect(empty_database_url) as conn:
        assert conn.execute("SELECT to_regclass('b')").fetchone() == (None,)


def test_no_transaction_files_run_after_the_transactional_pass(
    empty_database_url: str, tmp_path: Path
) -> None:
    (tmp_path / "0001_t.sql").write_text("CREATE TABLE t (x int);")
    (tmp_path / "0002_idx.sql").write_text(
        "-- migrate:no-transaction\n"
        "DROP INDEX CONCURRENTLY IF EXISTS t_x_idx;\n"
        "-- built outside a transaction\n"
        "CREATE INDEX CONCURRENTLY t_x_idx ON t (x);\n"
    )
    (tmp_path / "0003_u.sql").write_text("CREATE TABLE u (x int);")
    report = migrate(empty_database_url, tmp_path)
    assert report.applied == ["0001_t.sql", "0003_u.sql", "0002_idx.sql"]
    with psycopg.connect(empty_database_url) as conn:
        assert conn.execute("SELECT to_regclass('t_x_idx')").fetchone() == ("t_x_idx",)
    assert migrate(empty_database_url, tmp_path).applied == []


def test_concurrent_in_process_runners(empty_database_url: str) -> None:
    with ThreadPoolExecutor(4) as pool:
        reports = list(pool.map(lambda _: migrate(empty_database_url), range(4)))
    assert sorted(n for r in reports for n in r.applied) == SQL_FILES
