"""Recognising an unexported framework build for the missing_index hint."""

import pytest

from artemis.frameworks import FRAMEWORK_HINT, looks_like_framework_build


@pytest.mark.parametrize(
    ("files", "framework"),
    [
        (["nitro.json"], True),
        (["_app/immutable/entry.js"], True),
        ([".next/static/chunk.js"], True),
        ([".nuxt/dist/a.js"], True),
        ([".svelte-kit/output/x"], True),
        ([".output/public/index.html"], True),
        (["BUILD_ID", "build-manifest.json"], True),
        (["about.html", "build-manifest.json", "x", "BUILD_ID"], True),
        ([".next\\static\\chunk.js"], True),  # backslashes count as /
        (["_app\\immutable\\entry.js"], True),
        (["BUILD_ID"], False),  # one of the pair alone is not enough
        (["build-manifest.json"], False),
        (["BUILD_ID", "sub/build-manifest.json"], False),  # root entries only
        (["sub/BUILD_ID", "build-manifest.json"], False),
        (["sub/nitro.json"], False),
        (["_app/other.js"], False),
        (["a/.next/x"], False),
        ([".next"], False),
        (["about.html", "assets/app.js"], False),
        ([], False),
    ],
)
def test_framework_build_detection(files: list[str], framework: bool) -> None:
    assert looks_like_framework_build(files) is framework
    assert looks_like_framework_build(tuple(files)) is framework


def test_framework_hint_names_the_static_exports() -> None:
    for phrase in ("output: 'export'", "nuxi generate", "SvelteKit", "static adapter", "export"):
        assert phrase in FRAMEWORK_HINT
