"""Where the background functions' code lives: thin handlers, error classification in the
adapters that raise the errors, local-only queue code outside the layer, and metrics through
the one observability module."""

from __future__ import annotations

import ast
import json
import threading
from pathlib import Path

import psycopg
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

from artemis import observability
from artemis.db import connection as db_connection
from artemis.errors import StorageError
from artemis.storage import s3 as storage

ROOT = Path(__file__).resolve().parents[2]
LAYER = ROOT / "layers" / "common" / "python" / "artemis"
HANDLER_MAX_LINES = 80
# The adapters own these libraries' exceptions; a handler only maps our own errors.
ADAPTER_ONLY_IMPORTS = ("psycopg", "botocore", "boto3")


def background_handlers() -> list[Path]:
    return sorted(p for p in (ROOT / "functions").glob("*/app.py") if p.parent.name != "api")


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


@pytest.mark.parametrize("path", background_handlers(), ids=lambda p: p.parent.name)
def test_a_background_handler_is_thin(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= HANDLER_MAX_LINES, f"{path.parent.name}/app.py has {lines} lines"
    leaked = {m for m in imported_modules(path) if m.split(".")[0] in ADAPTER_ONLY_IMPORTS}
    assert leaked == set(), f"{path.parent.name}/app.py imports {sorted(leaked)}"


def test_every_background_function_is_checked() -> None:
    names = {p.parent.name for p in background_handlers()}
    assert {"site_worker", "relay", "drift_detect", "reconcile", "tombstone_purge"} <= names
    assert {"backfill", "migrate"} <= names


def test_the_layer_ships_no_sqs_poller() -> None:
    """Receiving from SQS is what Lambda's event source mapping does on AWS; only the local
    runtime polls, so no layer module receives messages or builds Lambda events."""
    receivers = [
        str(p.relative_to(LAYER))
        for p in LAYER.rglob("*.py")
        if "receive_message" in p.read_text() or "def lambda_record" in p.read_text()
    ]
    assert receivers == []


def test_no_function_looks_a_queue_up() -> None:
    """Both queue URLs are settings; nothing the functions run asks SQS where a queue is."""
    shipped = [*LAYER.rglob("*.py"), *(ROOT / "functions").glob("*/app.py")]
    lookups = [
        str(p.relative_to(ROOT))
        for p in shipped
        if "get_queue_url" in p.read_text() or "RedrivePolicy" in p.read_text()
    ]
    assert lookups == []


# --- error classification in the adapters ------------------------------------------------------


def client_error(code: str, status: int) -> ClientError:
    response: dict[str, object] = {
        "Error": {"Code": code},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, "CopyObject")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (psycopg.OperationalError("server closed the connection unexpectedly"), True),
        (psycopg.errors.LockNotAvailable("canceling statement due to lock timeout"), True),
        (psycopg.errors.UniqueViolation("duplicate key"), False),
        (psycopg.errors.UndefinedTable("no such table"), False),
        (ValueError("x"), False),
    ],
    ids=["connection-lost", "lock-timeout", "unique-violation", "undefined-table", "other"],
)
def test_the_database_adapter_classifies_its_errors(error: Exception, transient: bool) -> None:
    assert db_connection.is_transient(error) is transient


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (client_error("SlowDown", 503), True),
        (client_error("InternalError", 500), True),
        (client_error("Whatever", 429), True),
        (client_error("AccessDenied", 403), False),
        (client_error("NoSuchKey", 404), False),
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), True),
        (ReadTimeoutError(endpoint_url="http://127.0.0.1:1"), True),
        (StorageError("r2_move_failed"), False),  # only the chained cause says
    ],
    ids=["slowdown", "500", "429", "access-denied", "not-found", "unreachable", "read-timeout",
         "wrapper-alone"],
)  # fmt: skip
def test_the_storage_adapter_classifies_its_errors(error: Exception, transient: bool) -> None:
    assert storage.is_transient(error) is transient


# --- metrics through the observability module -------------------------------------------------


def test_emit_metric_writes_one_emf_line_with_every_value(
    capsys: pytest.CaptureFixture[str],
) -> None:
    capsys.readouterr()
    observability.emit_metric("outbox.pass_ms", 3.0, "Milliseconds", more=[4.0, 5.0])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    [line] = [entry for entry in lines if "_aws" in entry]
    [directive] = line["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "Artemis"
    assert directive["Metrics"] == [{"Name": "outbox.pass_ms", "Unit": "Milliseconds"}]
    assert line["outbox.pass_ms"] == [3.0, 4.0, 5.0]
    assert line["service"] == "artemis"


def test_the_local_runtime_serialises_flushes_of_the_shared_metric_set() -> None:
    """Lambda never runs two invocations in one process; the local pollers do, so importing
    the local event source installs a lock that every flush takes."""
    from artemis_local import sqs_source

    flushed = threading.Event()

    def flush() -> None:
        observability.flush_metrics()
        flushed.set()

    with sqs_source._FLUSH_LOCK:
        worker = threading.Thread(target=flush)
        worker.start()
        assert not flushed.wait(0.2)  # waiting for the lock this thread holds
    assert flushed.wait(5.0)
    worker.join(5.0)
