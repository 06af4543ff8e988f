"""The rule, time and report modules split out of larger ones stay pure: importing one loads
no AWS, Postgres or Redis client, so handlers and tests can use them without those costs."""

import subprocess
import sys

import pytest

PURE = [
    "alias_names",
    "bundles",
    "content_types",
    "deadlines",
    "deploy_ids",
    "deploy_metadata",
    "deploy_mode",
    "drift_report",
    "frameworks",
    "oidc_claims",
    "query_strings",
    "request_headers",
    "site_names",
    "times",
    "trust_rules",
    "upload_paths",
]


@pytest.mark.parametrize("module", PURE)
def test_module_imports_no_io_library(module: str) -> None:
    code = (
        f"import sys, artemis.{module};"
        "print(sorted(m for m in ('boto3', 'botocore', 'psycopg', 'redis') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
