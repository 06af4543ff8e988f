"""Bucket key rendering: slug ↔ dirname, deploy prefixes, alias, marker and trash keys, URLs.

The one renderer for every key. Pure: no I/O.
Slug (the registry's name) and Dirname (the bucket's first key segment) are distinct types
so that a handler cannot pass one where the other belongs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal, NewType

Slug = NewType("Slug", str)
Dirname = NewType("Dirname", str)
# The two fixed channels; a named preview's alias is any other name the alias rule admits
# (artemis.alias_names), carried as a plain str.
AliasName = Literal["production", "preview"]
ALIAS_NAMES: tuple[AliasName, ...] = ("production", "preview")

SITE = "<site>"
ALIAS = "<alias>"
DEPLOY_ID = "<ts>-<sha>"
MARKER_NAME = "_artemis_meta.json"
# The marker's field recording what the deploy held at finalize: relative path -> ETag.
MARKER_FILES = "files"
# And its SHA-256 digests (relative path -> lowercase hex), for the files whose digest the
# content index held at finalize: backfill rebuilds the index from them without re-reading
# an object whose ETag still matches.
MARKER_DIGESTS = "digests"
READYZ_PROBE_PREFIX = "_artemis_readyz_probe_no_match"


class KeyLayoutError(ValueError):
    """A key template breaks a layout rule; `variable` names the setting at fault."""

    def __init__(self, variable: str, rule: str) -> None:
        super().__init__(rule)
        self.variable = variable
        self.rule = rule


def _first_segment(template: str) -> str:
    return template.split("/", 1)[0]


def check_deploy_prefix_format(template: str) -> None:
    """One `<site>`, alone in the first segment, then `/`: otherwise sites could share one
    dirname, and with it one lock and one purge prefix. Checked at start-up in every mode."""
    var = "DEPLOY_PREFIX_FORMAT"
    if SITE not in template or DEPLOY_ID not in template:
        raise KeyLayoutError(var, f"must contain {SITE} and {DEPLOY_ID}")
    if template.count(SITE) != 1:
        raise KeyLayoutError(var, f"must contain {SITE} exactly once")
    if template.count(DEPLOY_ID) != 1:
        raise KeyLayoutError(var, f"must contain {DEPLOY_ID} exactly once")
    head = template.split(DEPLOY_ID, 1)[0]
    if SITE not in head:
        raise KeyLayoutError(var, f"{SITE} must come before {DEPLOY_ID}")
    if "/" not in head or SITE not in _first_segment(head):
        raise KeyLayoutError(var, f"{SITE} must be in the first path segment, followed by /")
    if _first_segment(head).startswith("_"):
        raise KeyLayoutError(var, "the site segment must not begin with _ (reserved names)")


def check_alias_format(variable: str, alias_format: str, deploy_prefix_format: str) -> None:
    """An alias format names `<site>` in the deploy template's first segment and nowhere
    after it, so an alias key always maps back to its site's dirname. Checked in every mode."""
    if SITE not in alias_format or "/" not in alias_format:
        raise KeyLayoutError(variable, f"must contain {SITE} and a /")
    if _first_segment(alias_format) != _first_segment(deploy_prefix_format):
        raise KeyLayoutError(
            variable, "first segment must equal DEPLOY_PREFIX_FORMAT's first segment"
        )
    if SITE in alias_format.split("/", 1)[1]:
        raise KeyLayoutError(variable, f"must not contain {SITE} after the first segment")


def check_named_alias_format(
    alias_format: str, deploy_prefix_format: str, fixed_formats: tuple[str, ...]
) -> None:
    """The named previews' alias keys: the alias format rules, plus `<alias>` alone as the last
    segment, in a folder of their own. One listing of that folder then finds every named alias
    of a site, and nothing else: no deploy, no fixed alias object."""
    var = "ALIAS_NAMED_KEY_FORMAT"
    check_alias_format(var, alias_format, deploy_prefix_format)
    if alias_format.count(ALIAS) != 1 or not alias_format.endswith("/" + ALIAS):
        raise KeyLayoutError(var, f"must end with /{ALIAS}, its only {ALIAS}")
    folder = alias_format[: -len(ALIAS)]
    deploys = deploy_prefix_format.split(DEPLOY_ID, 1)[0]
    if folder.count("/") < 2 or folder.startswith(deploys) or deploys.startswith(folder):
        raise KeyLayoutError(
            var, "must name a folder of its own under the site, apart from its deploys"
        )
    if any(fixed.startswith(folder) for fixed in fixed_formats):
        raise KeyLayoutError(var, "must not hold the production or preview alias object")


def check_url_format(variable: str, url_format: str) -> None:
    if SITE not in url_format:
        raise KeyLayoutError(variable, f"must contain {SITE}")


def check_named_url_format(url_format: str) -> None:
    """A named preview's URL names both its site and its alias (one host per preview)."""
    var = "PUBLIC_URL_NAMED_FORMAT"
    check_url_format(var, url_format)
    if url_format.count(ALIAS) != 1:
        raise KeyLayoutError(var, f"must contain {ALIAS} exactly once")


def normalize_trash_prefix(prefix: str) -> str:
    """Trash root with a trailing `/`; it must start with `_` so site enumeration skips it."""
    if not prefix.startswith("_"):
        raise KeyLayoutError("CLEANUP_TRASH_PREFIX", "must begin with _ (reserved names)")
    return prefix if prefix.endswith("/") else prefix + "/"


def _with_slash(prefix: str) -> str:
    return prefix if prefix.endswith("/") else prefix + "/"


@dataclass(frozen=True)
class KeyLayout:
    """Every bucket key and public URL, rendered from validated templates."""

    deploy_prefix_format: str = "<site>/deploys/<ts>-<sha>/"
    alias_production_format: str = "<site>/production"
    alias_preview_format: str = "<site>/preview"
    public_url_production_format: str = "https://<site>.freecode.camp"
    public_url_preview_format: str = "https://<site>.preview.freecode.camp"
    # Empty: `<site segment>/previews/<alias>`, the deploy template's first segment, so a
    # layout customized before named previews existed stays valid without a new setting.
    alias_named_format: str = ""
    public_url_named_format: str = "https://<alias>--<site>.preview.freecode.camp"
    trash_prefix: str = "_trash/"

    def __post_init__(self) -> None:
        check_deploy_prefix_format(self.deploy_prefix_format)
        check_alias_format(
            "ALIAS_PRODUCTION_KEY_FORMAT", self.alias_production_format, self.deploy_prefix_format
        )
        check_alias_format(
            "ALIAS_PREVIEW_KEY_FORMAT", self.alias_preview_format, self.deploy_prefix_format
        )
        check_url_format("PUBLIC_URL_PRODUCTION_FORMAT", self.public_url_production_format)
        check_url_format("PUBLIC_URL_PREVIEW_FORMAT", self.public_url_preview_format)
        if not self.alias_named_format:
            named = _first_segment(self.deploy_prefix_format) + "/previews/" + ALIAS
            object.__setattr__(self, "alias_named_format", named)
        check_named_alias_format(
            self.alias_named_format,
            self.deploy_prefix_format,
            (self.alias_production_format, self.alias_preview_format),
        )
        check_named_url_format(self.public_url_named_format)
        object.__setattr__(self, "trash_prefix", normalize_trash_prefix(self.trash_prefix))

    # --- template parts -------------------------------------------------------------
    @property
    def _head(self) -> str:
        return self.deploy_prefix_format.split(DEPLOY_ID, 1)[0]

    @property
    def _tail(self) -> str:
        return self.deploy_prefix_format.split(DEPLOY_ID, 1)[1]

    @property
    def _site_segment(self) -> str:
        return _first_segment(self._head)

    @property
    def _head_after_site(self) -> str:
        """The head after its site segment, starting with `/` (e.g. `/deploys/`)."""
        return self._head[len(self._site_segment) :]

    # --- slug → dirname and back ---------------------------------------------------
    def dirname(self, slug: Slug) -> Dirname:
        return Dirname(self._site_segment.replace(SITE, slug))

    def slug_for(self, dirname: str) -> Slug | None:
        """The slug a dirname was rendered from, or None when it matches no slug."""
        before, after = self._site_segment.split(SITE, 1)
        if len(dirname) <= len(before) + len(after):
            return None
        if not (dirname.startswith(before) and dirname.endswith(after)):
            return None
        return Slug(dirname[len(before) : len(dirname) - len(after)])

    # --- deploy keys ------------------------------------------------------------------
    def site_prefix(self, site: Dirname) -> str:
        """Where a site's deploys live, e.g. `www/deploys/`."""
        return _with_slash(site + self._head_after_site)

    def deploy_prefix(self, site: Dirname, deploy_id: str) -> str:
        return _with_slash(site + self._head_after_site + deploy_id + self._tail)

    def marker_key(self, site: Dirname, deploy_id: str) -> str:
        return self.deploy_prefix(site, deploy_id) + MARKER_NAME

    def deploy_id_of(self, site: Dirname, key: str) -> str | None:
        """The deploy id a key under the site prefix belongs to, or None."""
        prefix = self.site_prefix(site)
        if not key.startswith(prefix):
            return None
        rest = key[len(prefix) :]
        tail = self._tail.rstrip("/")
        deploy_id = rest.split("/", 1)[0]
        if tail and deploy_id.endswith(tail):
            deploy_id = deploy_id[: -len(tail)]
        return deploy_id or None

    # --- alias keys -------------------------------------------------------------------
    def alias_key(self, site: Dirname, name: str) -> str:
        """`<dirname>/<tail>`: equal to the slug rendering, which the checks above guarantee.
        A name other than the two channels is a named preview's (the caller checked the rule)."""
        if name == "production":
            fmt = self.alias_production_format
        elif name == "preview":
            fmt = self.alias_preview_format
        else:
            fmt = self.alias_named_format.replace(ALIAS, name)
        return site + "/" + fmt.split("/", 1)[1]

    def named_alias_prefix(self, site: Dirname) -> str:
        """The folder holding a site's named preview alias objects (`www/previews/`)."""
        return site + "/" + self.alias_named_format[: -len(ALIAS)].split("/", 1)[1]

    def named_alias_of(self, site: Dirname, key: str) -> str | None:
        """The named preview an alias object key belongs to; None for any other key."""
        prefix = self.named_alias_prefix(site)
        if not key.startswith(prefix):
            return None
        name = key[len(prefix) :]
        return name if name and "/" not in name else None

    # --- trash keys -------------------------------------------------------------------
    def deploy_trash_prefix(self, site: Dirname, deploy_id: str) -> str:
        return f"{self.trash_prefix}{site}/{deploy_id}/"

    def site_trash_prefix(self, site: Dirname) -> str:
        return f"{self.trash_prefix}{site}/"

    def alias_trash_key(self, site: Dirname, name: str) -> str:
        return self.trash_prefix + self.alias_key(site, name)

    # --- public URLs ------------------------------------------------------------------
    def public_url(self, slug: Slug, name: str) -> str:
        if name == "production":
            return self.public_url_production_format.replace(SITE, slug)
        if name == "preview":
            return self.public_url_preview_format.replace(SITE, slug)
        return self.public_url_named_format.replace(SITE, slug).replace(ALIAS, name)


def _marker_map(body: bytes | None, name: str) -> dict[str, str] | None:
    """A completion marker's object field `name` as strings; None for a marker without it
    or unreadable."""
    if body is None:
        return None
    try:
        data = json.loads(body)
    except ValueError:
        return None
    found = data.get(name) if isinstance(data, dict) else None
    if not isinstance(found, dict):
        return None
    return {str(k): str(v) for k, v in found.items()}


def finalize_record(body: bytes | None) -> dict[str, str] | None:
    """What a completion marker records the deploy held at finalize (relative path → ETag);
    None for a marker without a record (written before finalize kept one) or unreadable."""
    return _marker_map(body, MARKER_FILES)


def finalize_digests(body: bytes | None) -> dict[str, str]:
    """The SHA-256 digests a completion marker records (relative path -> hex); empty for a
    marker without them or unreadable."""
    return recorded_digests(body) or {}


def recorded_digests(body: bytes | None) -> dict[str, str] | None:
    """`finalize_digests`, but None for a marker that has no digests field (its deploy was
    finalized before the content index existed) or is unreadable."""
    return _marker_map(body, MARKER_DIGESTS)
