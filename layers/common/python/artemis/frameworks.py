"""Recognising an unexported framework build, so finalize's `missing_index` answer can say how
to produce a static export. Pure: stdlib only, no I/O."""

from __future__ import annotations

from collections.abc import Sequence

_FRAMEWORK_PREFIXES = ("_app/immutable/", ".next/", ".nuxt/", ".svelte-kit/", ".output/")

FRAMEWORK_HINT = (
    "This looks like an unexported framework build. Configure a static export (for example "
    "Next.js output: 'export', nuxi generate, or SvelteKit's static adapter) and point the "
    "build output at the export directory, which contains index.html."
)


def looks_like_framework_build(files: Sequence[str]) -> bool:
    """Whether finalize's missing_index answer carries FRAMEWORK_HINT."""
    entries = [entry.replace("\\", "/") for entry in files]
    for entry in entries:
        if entry == "nitro.json" or entry.startswith(_FRAMEWORK_PREFIXES):
            return True
    return "BUILD_ID" in entries and "build-manifest.json" in entries
