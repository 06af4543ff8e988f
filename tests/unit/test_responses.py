"""artemis.responses as the services use them: an omitted field left None is absent from the
JSON (never null), "" stays "", and artemis.http serializes models and lists of models."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from artemis import responses
from artemis.db import audit as audit_db
from artemis.db import repo_requests
from artemis.db import sites as sites_db
from artemis.http import json_response
from artemis.services import audit, registry, repos
from artemis_local.functions import FUNCTIONS_DIR
from tests.conftest import base_env

SERVICES = Path(responses.__file__).parent / "services"
API_APP = FUNCTIONS_DIR / "api" / "app.py"
T0 = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)

REPO_ROW = responses.RepoRow(
    id="req_0123456789abcdef0123", name="web", owner="org", visibility="private",
    status="pending", requestedBy="", createdAt="2026-01-02T03:04:05.678000Z",
    updatedAt="2026-01-02T03:04:05.678000Z",
)  # fmt: skip

# One instance per model a service returns, every omittable field left None.
SAMPLES: dict[str, BaseModel] = {
    "Whoami": responses.Whoami(login="octo", authorizedSites=["www"]),
    "InitResponse": responses.InitResponse(deployId="d", jwt="j", expiresAt="t"),
    "UploadResponse": responses.UploadResponse(received="index.html", key="www/d/index.html"),
    "DigestsResponse": responses.DigestsResponse(upload=["a"], copied=["b"], remaining=[]),
    "BundleResponse": responses.BundleResponse(
        received=["index.html"], files=1, bytes=4, remaining=[]
    ),
    "PresignedUpload": responses.PresignedUpload(path="a", key="k", url="u", fields={"f": "v"}),
    "PresignResponse": responses.PresignResponse(
        uploads=[responses.PresignedUpload(path="a", key="k", url="u", fields={})],
        expiresAt="t",
        maxBytes=10,
    ),
    "FinalizeResponse": responses.FinalizeResponse(url="u", deployId="d", mode="preview"),
    "DeployRow": responses.DeployRow(deployId="d"),
    "AliasResponse": responses.AliasResponse(site="www", mode="production", deployId="d", url="u"),
    "AliasMove": responses.AliasMove(url="u", deployId="d"),
    "Preview": responses.Preview(name="pr-1", deployId="d", url="u"),
    "PreviewRemoved": responses.PreviewRemoved(name="pr-1", deployId="d", status="removed"),
    "DeployDeleted": responses.DeployDeleted(
        site="www", deployId="d", status="tombstoned", moved=0
    ),
    "DeployRestored": responses.DeployRestored(
        site="www", deployId="d", status="restored", moved=1, bytes=2
    ),
    "TrashEntry": responses.TrashEntry(deployId="", trashedAt="t", expiresAt="e", bytes=0),
    "SiteRow": responses.SiteRow(
        slug="www", teams=["web"], createdAt="c", updatedAt="u", createdBy=""
    ),
    "TrustRule": responses.TrustRule(
        id="tr_0123456789abcdef0123",
        site="www",
        repository="octo/www",
        repositoryId=1,
        workflow=".github/workflows/deploy.yml",
        aliases=["preview"],
        createdAt="c",
        createdBy="octo",
    ),
    "Hook": responses.Hook(
        id="hk_0123456789abcdef0123",
        site="www",
        url="https://h.example/x",
        events=["deploy.finalized"],
        createdAt="c",
        createdBy="octo",
    ),
    "HookCreated": responses.HookCreated(
        id="hk_0123456789abcdef0123",
        site="www",
        url="https://h.example/x",
        events=["deploy.finalized"],
        createdAt="c",
        createdBy="octo",
        secret="whsec_x",
    ),
    "HookAttempt": responses.HookAttempt(attempt=1, at="a", durationMs=3),
    "HookDelivery": responses.HookDelivery(
        id="dlv_0123456789abcdef0123",
        eventId="evt_0123456789abcdef0123",
        event="deploy.finalized",
        createdAt="c",
        state="delivered",
        attempts=1,
        log=[],
    ),
    "HookQueued": responses.HookQueued(deliveryId="dlv_0123456789abcdef0123", status="queued"),
    "SitePurged": responses.SitePurged(slug="www", status="purged", moved=3),
    "AuditRow": responses.AuditRow(
        id=1, occurredAt="t", actor="octo", action="site.promote", outcome="success"
    ),
    "RepoRow": REPO_ROW,
    "RepoApproval": responses.RepoApproval(outcome="ok", request=REPO_ROW),
    "RepoTemplates": responses.RepoTemplates(templates=[]),
}


def _wire(body: Any) -> str:
    """The body text the API sends for `body`."""
    text = json_response(200, body).body
    assert text is not None
    return text


def _service_models() -> set[str]:
    """Every name the service modules import from artemis.responses."""
    names: set[str] = set()
    for path in SERVICES.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "artemis.responses":
                names.update(alias.name for alias in node.names)
    return names


def _omittable(model: type[BaseModel]) -> set[str]:
    return {name for name, field in model.model_fields.items() if field.exclude_if is not None}


def test_every_model_a_service_returns_has_a_sample() -> None:
    used = _service_models()
    assert used, "the services import no response model"
    assert used <= set(SAMPLES), f"add a sample for {sorted(used - set(SAMPLES))}"


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_an_omitted_field_left_none_is_absent(name: str) -> None:
    sample = SAMPLES[name]
    fields = type(sample).model_fields
    wanted = [field for field in fields if field not in _omittable(type(sample))]
    dumped = sample.model_dump(mode="json")
    assert list(dumped) == wanted  # the declared order, which is the wire order
    assert None not in dumped.values()
    assert "null" not in _wire(sample)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_an_omitted_field_with_a_value_is_present(name: str) -> None:
    sample = SAMPLES[name]
    omittable = _omittable(type(sample))
    typed = {"detail": {"k": "v"}, "state": "live", "files": 1, "bytes": 1, "pr": 1, "status": 200}
    values = {field: typed.get(field, "x") for field in omittable}
    filled = sample.model_copy(update=values)
    assert list(filled.model_dump(mode="json")) == list(type(sample).model_fields)


def test_an_empty_string_is_kept_not_omitted() -> None:
    """Only None is omitted: a known actor that is "" stays "" (as the dicts had it)."""
    assert responses.DeployRow(deployId="d", actor="").model_dump(mode="json") == {
        "deployId": "d",
        "actor": "",
        "aliases": [],
    }


def test_json_response_serializes_models_lists_and_dicts() -> None:
    rows = [responses.DeployRow(deployId="a", actor="octo"), responses.DeployRow(deployId="b")]
    assert _wire(rows) == (
        '[{"deployId":"a","actor":"octo","aliases":[]},{"deployId":"b","aliases":[]}]'
    )
    assert _wire([]) == "[]"
    move = responses.AliasMove(url="https://www.example.com/", deployId="d")
    assert _wire(move) == '{"url":"https://www.example.com/","deployId":"d"}'
    assert _wire({"ok": True}) == '{"ok":true}'
    approval = SAMPLES["RepoApproval"]
    assert json.loads(_wire(approval))["request"]["requestedBy"] == ""


def test_json_response_keeps_json_dumps_escaping() -> None:
    """The bytes stay what json.dumps wrote for the dicts (non-ASCII escaped)."""
    whoami = responses.Whoami(login="ōcto", authorizedSites=[])
    assert _wire(whoami) == '{"login":"\\u014dcto","authorizedSites":[]}'


def _repo_request(**changes: str) -> repo_requests.RepoRequest:
    fields = {
        "id": "req_0123456789abcdef0123", "name": "web", "owner": "org", "description": "",
        "template": "", "visibility": "private", "status": "pending", "url": "", "error": "",
        "requested_by": "octo", "approver": "", "reject_reason": "", **changes,
    }  # fmt: skip
    return repo_requests.RepoRequest(**fields, created_at=T0, updated_at=T0)  # type: ignore[arg-type]


def test_a_repo_row_leaves_out_empty_and_hidden_fields() -> None:
    row = _repo_request(approver="boss", description="d")
    hidden = json.loads(_wire(repos.repo_json(row, show_actor=False)))
    assert hidden == {
        "id": "req_0123456789abcdef0123", "name": "web", "owner": "org",
        "visibility": "private", "status": "pending", "requestedBy": "",
        "createdAt": "2026-01-02T03:04:05.678000Z", "updatedAt": "2026-01-02T03:04:05.678000Z",
        "description": "d",
    }  # fmt: skip
    full = _repo_request(
        description="d", template="t", url="u", error="e", approver="boss", reject_reason="r"
    )
    shown = json.loads(_wire(repos.repo_json(full, show_actor=True)))
    assert list(shown) == [
        "id", "name", "owner", "visibility", "status", "requestedBy", "createdAt", "updatedAt",
        "description", "template", "url", "error", "approver", "rejectReason",
    ]  # fmt: skip
    assert (shown["requestedBy"], shown["approver"]) == ("octo", "boss")


def test_an_audit_row_leaves_out_empty_columns() -> None:
    bare = audit_db.AuditRow(
        id=7, occurred_at=T0, actor="system:gc", action="site.gc", site="", deploy_id="",
        outcome="success", detail={}, request_id="",
    )  # fmt: skip
    assert _wire([audit._row_json(bare)]) == (
        '[{"id":7,"occurredAt":"2026-01-02T03:04:05.678000Z","actor":"system:gc",'
        '"action":"site.gc","outcome":"success"}]'
    )
    full = audit_db.AuditRow(
        id=8, occurred_at=T0, actor="octo", action="site.promote", site="www", deploy_id="d",
        outcome="success", detail={"to": "d", "n": 1.5}, request_id="r",
    )  # fmt: skip
    assert json.loads(_wire(audit._row_json(full))) == {
        "id": 8, "occurredAt": "2026-01-02T03:04:05.678000Z", "actor": "octo",
        "action": "site.promote", "outcome": "success", "site": "www", "deployId": "d",
        "requestId": "r", "detail": {"to": "d", "n": 1.5},
    }  # fmt: skip


def test_a_site_row_keeps_a_hidden_creator_as_empty() -> None:
    row = sites_db.SiteRow(
        slug="www", teams=["web", "staff"], created_at=T0, updated_at=T0, created_by="octo"
    )
    assert _wire(registry.site_json(row, show_actor=False)) == (
        '{"slug":"www","teams":["web","staff"],"createdAt":"2026-01-02T03:04:05.678000Z",'
        '"updatedAt":"2026-01-02T03:04:05.678000Z","createdBy":""}'
    )


def test_the_services_leave_the_models_off_the_cold_init() -> None:
    """The API imports every service at init; the models load with the first answer."""
    code = (
        "import sys, artemis.http\n"
        "from artemis.services import aliases, audit, bundles, deletion, deploys, registry, repos\n"
        "from artemis.services import whoami\n"
        "sys.exit('artemis.responses' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_the_api_cold_init_loads_neither_the_models_nor_the_route_promises_text() -> None:
    """The API function's import registers every route, yet defines no response model: the
    models and each route's OpenAPI fields are built only when the document is generated."""
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('api_app', {str(API_APP)!r})\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(module)\n"
        "assert module.app.routes is not None\n"
        "sys.exit('artemis.responses' in sys.modules)"
    )
    env = {**os.environ, **base_env()}
    assert subprocess.run([sys.executable, "-c", code], env=env, check=False).returncode == 0
