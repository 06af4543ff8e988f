"""The migration Lambda: apply the SQL migrations (artemis.db.migrate) to the configured
database. Invoke it once after every `sam deploy` (docs/deploy.md); it is idempotent and
concurrent runs serialise on an advisory lock, so a repeated or doubled invoke is harmless.

The migrations ship with the function: `sql` here is a link to the repository's `sql/`, which
`sam build` copies into the package as files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from artemis import runtime
from artemis.config import DatabaseSettings
from artemis.db.migrate import migrate
from artemis.observability import logger

SQL_DIR = Path(__file__).resolve().parent / "sql"

# Validate configuration at cold start, so a bad value fails the init with its one line.
runtime.current(DatabaseSettings)


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    settings = runtime.current(DatabaseSettings).settings
    report = migrate(settings.database_url, SQL_DIR, retry_window=settings.pg_connect_retry_window)
    logger.info("migrate.done", extra={"applied": report.applied, "skipped": report.skipped})
    return {"applied": report.applied, "skipped": report.skipped}
