"""The GitHub deployments Artemis created (`github_deployments`): one per deploy and
environment (alias), so a retried message does not create a second, and the alias moving on
can mark the one it left inactive."""

from __future__ import annotations

from dataclasses import dataclass

from psycopg import Connection

from artemis.keys import Dirname


@dataclass(frozen=True)
class GitHubDeployment:
    repo: str
    deployment_id: int


def get(
    conn: Connection, site: Dirname, deploy_id: str, environment: str
) -> GitHubDeployment | None:
    row = conn.execute(
        "SELECT repo, deployment_id FROM github_deployments"
        " WHERE site = %s AND deploy_id = %s AND environment = %s",
        [site, deploy_id, environment],
    ).fetchone()
    return GitHubDeployment(row[0], int(row[1])) if row else None


def insert(
    conn: Connection, site: Dirname, deploy_id: str, environment: str, repo: str,
    deployment_id: int,
) -> None:  # fmt: skip
    conn.execute(
        "INSERT INTO github_deployments (site, deploy_id, environment, repo, deployment_id)"
        " VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
        [site, deploy_id, environment, repo, deployment_id],
    )


def record(
    conn: Connection, site: Dirname, deploy_id: str, environment: str, state: str,
    error: str | None,
) -> None:  # fmt: skip
    conn.execute(
        "UPDATE github_deployments SET last_state = %s, last_error = %s"
        " WHERE site = %s AND deploy_id = %s AND environment = %s",
        [state, error, site, deploy_id, environment],
    )
