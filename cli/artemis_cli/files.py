"""Which files of a build directory a deploy uploads.

Walks the directory without following directory links. Skipped: dotfiles and dot-directories
(`.git`, `.env`, ...). A symlink to a file inside the directory is uploaded with the target's
bytes; a symlink that leads outside it (or is broken, or is a directory link) is refused and
reported, never read: a build must not be able to publish the machine's other files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class BuildFile:
    path: str  # relative, "/"-separated: the deploy path
    source: Path
    size: int


@dataclass
class Build:
    root: Path
    files: list[BuildFile] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)  # (path, why)

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


def collect(root: Path) -> Build:
    root = root.resolve()
    build = Build(root)
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        kept_dirs = []
        for name in sorted(dirnames):
            if name.startswith("."):
                continue
            if (here / name).is_symlink():
                build.refused.append((_rel(root, here / name), "a directory link"))
                continue
            kept_dirs.append(name)
        dirnames[:] = kept_dirs
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            entry = here / name
            rel = _rel(root, entry)
            if entry.is_symlink():
                target = entry.resolve()
                if not target.is_relative_to(root):
                    build.refused.append((rel, f"a link to {target}, outside the directory"))
                    continue
                if not target.is_file():
                    build.refused.append((rel, "a broken link"))
                    continue
            elif not entry.is_file():
                build.refused.append((rel, "not a regular file"))
                continue
            build.files.append(BuildFile(rel, entry, entry.stat().st_size))
    return build


def _rel(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()
