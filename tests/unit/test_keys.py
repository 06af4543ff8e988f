"""Key rendering under the default template and under one where slug ≠ dirname."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from artemis.keys import Dirname, KeyLayout, KeyLayoutError, Slug

DEFAULT = KeyLayout()
PROD = KeyLayout(
    deploy_prefix_format="<site>.freecode.camp/deploys/<ts>-<sha>/",
    alias_production_format="<site>.freecode.camp/production",
    alias_preview_format="<site>.freecode.camp/preview",
)
DEPLOY = "20260420-141522-abc1234"


def test_default_template_renders_the_spec_examples() -> None:
    site = DEFAULT.dirname(Slug("www"))
    assert site == "www"
    assert DEFAULT.site_prefix(site) == "www/deploys/"
    assert DEFAULT.deploy_prefix(site, DEPLOY) == f"www/deploys/{DEPLOY}/"
    assert DEFAULT.marker_key(site, DEPLOY) == f"www/deploys/{DEPLOY}/_artemis_meta.json"
    assert DEFAULT.alias_key(site, "production") == "www/production"
    assert DEFAULT.alias_key(site, "preview") == "www/preview"
    assert DEFAULT.public_url(Slug("www"), "production") == "https://www.freecode.camp"
    assert DEFAULT.public_url(Slug("www"), "preview") == "https://www.preview.freecode.camp"


def test_production_template_separates_slug_and_dirname() -> None:
    site = PROD.dirname(Slug("www"))
    assert site == "www.freecode.camp"
    assert PROD.site_prefix(site) == "www.freecode.camp/deploys/"
    assert PROD.deploy_prefix(site, DEPLOY) == f"www.freecode.camp/deploys/{DEPLOY}/"
    assert PROD.alias_key(site, "production") == "www.freecode.camp/production"
    assert PROD.deploy_trash_prefix(site, DEPLOY) == f"_trash/www.freecode.camp/{DEPLOY}/"
    assert PROD.site_trash_prefix(site) == "_trash/www.freecode.camp/"
    assert PROD.alias_trash_key(site, "preview") == "_trash/www.freecode.camp/preview"


@pytest.mark.parametrize(
    ("dirname", "slug"),
    [
        ("www.freecode.camp", "www"),
        ("freecode.camp", None),
        (".freecode.camp", None),
        ("x.example.org", None),
        ("a.b.freecode.camp", "a.b"),
    ],
)
def test_inverse_maps_only_matching_dirnames(dirname: str, slug: str | None) -> None:
    assert PROD.slug_for(dirname) == slug


@given(st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True))
def test_slug_dirname_round_trip(slug: str) -> None:
    for layout in (DEFAULT, PROD):
        assert layout.slug_for(layout.dirname(Slug(slug))) == slug


def test_deploy_id_of_key() -> None:
    site = PROD.dirname(Slug("www"))
    assert PROD.deploy_id_of(site, f"www.freecode.camp/deploys/{DEPLOY}/index.html") == DEPLOY
    assert PROD.deploy_id_of(site, "www.freecode.camp/production") is None
    assert PROD.deploy_id_of(Dirname("other"), f"www.freecode.camp/deploys/{DEPLOY}/a") is None


def test_template_tail_is_kept() -> None:
    layout = KeyLayout(deploy_prefix_format="<site>/d/<ts>-<sha>/files")
    site = layout.dirname(Slug("docs"))
    assert layout.deploy_prefix(site, DEPLOY) == f"docs/d/{DEPLOY}/files/"
    assert layout.deploy_id_of(site, f"docs/d/{DEPLOY}/files/index.html") == DEPLOY


@pytest.mark.parametrize(
    ("template", "rule"),
    [
        ("<site>/deploys/", "must contain <site> and <ts>-<sha>"),
        ("deploys/<ts>-<sha>/", "must contain <site> and <ts>-<sha>"),
        ("<site>/<site>/<ts>-<sha>/", "exactly once"),
        ("<ts>-<sha>/<site>/", "must come before"),
        ("sites/<site>/<ts>-<sha>/", "first path segment"),
        ("<site><ts>-<sha>/", "first path segment"),
        ("_<site>/deploys/<ts>-<sha>/", "must not begin with _"),
    ],
)
def test_g18_deploy_template_rules(template: str, rule: str) -> None:
    with pytest.raises(KeyLayoutError) as info:
        KeyLayout(deploy_prefix_format=template)
    assert info.value.variable == "DEPLOY_PREFIX_FORMAT"
    assert rule in info.value.rule


@pytest.mark.parametrize(
    ("alias", "rule"),
    [
        ("production", "must contain <site> and a /"),
        ("<site>", "must contain <site> and a /"),
        ("<site>.x/production", "first segment must equal"),
        ("<site>/<site>/production", "must not contain <site> after"),
    ],
)
def test_g18_alias_format_rules(alias: str, rule: str) -> None:
    with pytest.raises(KeyLayoutError) as info:
        KeyLayout(alias_production_format=alias)
    assert info.value.variable == "ALIAS_PRODUCTION_KEY_FORMAT"
    assert rule in info.value.rule


def test_trash_prefix_must_be_reserved_and_gets_a_slash() -> None:
    assert KeyLayout(trash_prefix="_bin").trash_prefix == "_bin/"
    with pytest.raises(KeyLayoutError) as info:
        KeyLayout(trash_prefix="trash/")
    assert info.value.variable == "CLEANUP_TRASH_PREFIX"


def test_named_preview_keys_and_urls_under_the_default_layout() -> None:
    site = DEFAULT.dirname(Slug("www"))
    assert DEFAULT.alias_key(site, "pr-12") == "www/previews/pr-12"
    assert DEFAULT.named_alias_prefix(site) == "www/previews/"
    assert DEFAULT.named_alias_of(site, "www/previews/pr-12") == "pr-12"
    assert DEFAULT.named_alias_of(site, "www/previews/pr-12/x") is None
    assert DEFAULT.named_alias_of(site, "www/preview") is None
    assert DEFAULT.public_url(Slug("www"), "pr-12") == "https://pr-12--www.preview.freecode.camp"
    assert DEFAULT.alias_trash_key(site, "pr-12") == "_trash/www/previews/pr-12"


def test_named_preview_folder_follows_a_customized_deploy_layout() -> None:
    site = PROD.dirname(Slug("www"))
    assert PROD.alias_key(site, "pr-12") == "www.freecode.camp/previews/pr-12"
    assert PROD.named_alias_prefix(site) == "www.freecode.camp/previews/"


@pytest.mark.parametrize(
    ("named", "rule"),
    [
        ("<site>/previews/x", "must end with /<alias>, its only <alias>"),
        ("<site>/previews/<alias>-<alias>", "must end with /<alias>, its only <alias>"),
        ("<site>/previews/<alias>/x", "must end with /<alias>, its only <alias>"),
        ("<site>/<alias>", "must name a folder of its own under the site, apart from its deploys"),
        (
            "<site>/deploys/<alias>",
            "must name a folder of its own under the site, apart from its deploys",
        ),
        (
            "<site>/deploys/p/<alias>",
            "must name a folder of its own under the site, apart from its deploys",
        ),
        ("x<site>/p/<alias>", "first segment must equal DEPLOY_PREFIX_FORMAT's first segment"),
        ("<site>/p/<site>/<alias>", "must not contain <site> after the first segment"),
    ],
)
def test_named_alias_format_rules(named: str, rule: str) -> None:
    with pytest.raises(KeyLayoutError) as info:
        KeyLayout(alias_named_format=named)
    assert info.value.variable == "ALIAS_NAMED_KEY_FORMAT"
    assert info.value.rule == rule


def test_named_alias_folder_must_not_hold_a_fixed_alias_object() -> None:
    with pytest.raises(KeyLayoutError) as info:
        KeyLayout(alias_preview_format="<site>/p/preview", alias_named_format="<site>/p/<alias>")
    assert info.value.rule == "must not hold the production or preview alias object"


@pytest.mark.parametrize(
    ("url", "rule"),
    [
        ("https://<alias>.preview.freecode.camp", "must contain <site>"),
        ("https://<site>.preview.freecode.camp", "must contain <alias> exactly once"),
        ("https://<alias>-<alias>--<site>.x", "must contain <alias> exactly once"),
    ],
)
def test_named_url_format_rules(url: str, rule: str) -> None:
    with pytest.raises(KeyLayoutError) as info:
        KeyLayout(public_url_named_format=url)
    assert info.value.variable == "PUBLIC_URL_NAMED_FORMAT"
    assert info.value.rule == rule
