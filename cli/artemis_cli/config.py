"""Where the CLI's settings come from: flags, then the environment, then `artemis.yaml`.

`artemis.yaml` (in the current directory, or the file named by `--config`) holds project
settings only, never a token:

    site: www          # the site's registry slug
    dir: dist          # the build directory `artemis deploy` uploads
    url: https://artemis.example.org   # optional: the server
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from artemis_cli.errors import CREDENTIALS, CliError, usage
from artemis_cli.oidc import available as oidc_available

CONFIG_FILE = "artemis.yaml"
TOKEN_VARIABLES = ("ARTEMIS_TOKEN", "GITHUB_TOKEN", "GH_TOKEN")
_FILE_KEYS = frozenset({"site", "dir", "url"})


@dataclass(frozen=True)
class Config:
    url: str | None
    token: str | None
    site: str | None
    dir: str | None
    token_from: str | None = None  # --token, or the variable the token came from
    actions_oidc: bool = False  # a GitHub Actions job that may request an OIDC token

    @property
    def deploys_with_oidc(self) -> bool:
        """`artemis deploy` presents the job's OIDC token unless a person's token is given
        (--token, ARTEMIS_TOKEN): GITHUB_TOKEN and GH_TOKEN in a workflow are usually the
        workflow's own token, which belongs to no person and could not deploy."""
        return self.actions_oidc and self.token_from not in ("--token", "ARTEMIS_TOKEN")

    def require_url(self) -> str:
        if not self.url:
            raise usage("no server: pass --url, set ARTEMIS_URL, or put url: in artemis.yaml")
        return self.url.rstrip("/")

    def require_token(self) -> str:
        if not self.token:
            names = ", ".join(TOKEN_VARIABLES)
            raise CliError("no_token", f"no token: pass --token or set one of {names}", CREDENTIALS)
        return self.token

    def require_site(self) -> str:
        if not self.site:
            raise usage("no site: pass --site, set ARTEMIS_SITE, or put site: in artemis.yaml")
        return self.site


def read_file(path: Path) -> dict[str, Any]:
    import yaml  # only when a file exists: keeps `artemis --help` light

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as err:
        raise usage(f"cannot read {path}: {err}") from None
    if not isinstance(data, dict):
        raise usage(f"{path}: expected a mapping of site, dir, url")
    unknown = sorted(set(map(str, data)) - _FILE_KEYS)
    if unknown:
        raise usage(f"{path}: unknown keys {unknown} (known: dir, site, url)")
    for key, value in data.items():
        if value is not None and not isinstance(value, str):
            raise usage(f"{path}: {key} must be a string")
    return data


def resolve(flags: Mapping[str, str | None], environ: Mapping[str, str] = os.environ) -> Config:
    """Flags > environment > file, per setting."""
    path = Path(flags.get("config") or CONFIG_FILE)
    explicit = flags.get("config") is not None
    if explicit and not path.is_file():
        raise usage(f"no such config file: {path}")
    file = read_file(path) if path.is_file() else {}

    def pick(flag: str, env: str | None) -> str | None:
        return flags.get(flag) or (environ.get(env) if env else None) or file.get(flag) or None

    from_file = file.get("dir")
    directory = (
        flags.get("dir")
        or environ.get("ARTEMIS_DIR")
        or (str(path.resolve().parent / from_file) if from_file else None)
    )  # a directory named in the file is relative to the file
    token_from = (
        "--token"
        if flags.get("token")
        else next((name for name in TOKEN_VARIABLES if environ.get(name)), None)
    )
    token = flags.get("token") or (environ[token_from] if token_from else None)
    return Config(
        url=pick("url", "ARTEMIS_URL"),
        token=token,
        site=pick("site", "ARTEMIS_SITE"),
        dir=directory,
        token_from=token_from,
        actions_oidc=oidc_available(environ),
    )
