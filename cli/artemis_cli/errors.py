"""What can go wrong, as exit codes a script can branch on (documented in cli/README.md)."""

from __future__ import annotations

from typing import Any

OK = 0
FAILED = 1  # the server refused the request (not found, invalid input, ...)
USAGE = 2  # bad flags, missing site or directory, unreadable artemis.yaml
CREDENTIALS = 3  # no token, or the server refused it (401, 403)
SERVER = 4  # the server or the storage failed (5xx, network, a non-Artemis answer)
PARTIAL_UPLOAD = 5  # some files did not upload; the deploy was not finalized
CONFLICT = 6  # 409: the alias moved, the site is locked, the deploy is finalized, ...

_CREDENTIAL_CODES = frozenset(
    {"missing_bearer", "unauthenticated", "jwt_expired", "jwt_invalid", "jwt_wrong_deploy",
     "user_unauthorized", "insufficient_scope", "site_unauthorized", "oidc_route",
     "trust_no_rules", "trust_repository", "trust_repository_id", "trust_workflow",
     "trust_environment", "trust_ref", "trust_alias", "trust_pull_request",
     "trust_rule_removed"}
)  # fmt: skip


class CliError(Exception):
    """An error with its exit code and a machine-readable code."""

    def __init__(
        self, code: str, message: str, exit_code: int, *, status: int | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:  # fmt: skip
        super().__init__(message)
        self.code = code
        self.message = message
        self.exit_code = exit_code
        self.status = status
        self.extra = extra or {}

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.status is not None:
            body["status"] = self.status
        return {"error": {**body, **self.extra}}


def usage(message: str) -> CliError:
    return CliError("usage", message, USAGE)


def api_error(status: int, code: str, message: str, extra: dict[str, Any]) -> CliError:
    """An error answer of the API mapped to its exit code."""
    if code in _CREDENTIAL_CODES or status == 401:
        exit_code = CREDENTIALS
    elif status == 409:
        exit_code = CONFLICT
    elif status >= 500 or status == 429:
        exit_code = SERVER
    else:
        exit_code = FAILED
    return CliError(code, message, exit_code, status=status, extra=extra)
