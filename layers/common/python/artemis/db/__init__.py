"""Postgres adapters: connection handling, migrations, the site lock and one repository
module per table. SQL lives here, in plain text; nothing above this package writes SQL."""
