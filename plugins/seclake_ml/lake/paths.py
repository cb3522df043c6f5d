"""One policy for paths inside a local lake: links, glob characters, and where they may lead.

Both extraction (:mod:`seclake_ml.lake.duck`) and scoring (:mod:`seclake_ml.scoring.service`,
:func:`seclake_ml.scoring.stores.open_local_object`) list and open lake files through these helpers,
so a file or folder behaves the same in both:

* a symbolic link (to a file or to a partition folder) is followed when what it resolves to lies
  inside the lake root, and **refused** otherwise: the refusal is counted and logged, and the file
  is never read;
* a folder or file reached twice (a link loop, a link to another partition or file) is read once;
* file names are never expanded as patterns: DuckDB treats ``*``, ``?`` and ``[`` in a path as a
  glob, so every path handed to it goes through :func:`literal_path`.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

_GLOB_CHARS = re.compile(r"([*?\[])")


def literal_path(path: str) -> str:
    """``path`` with DuckDB's glob characters bracketed (``*`` -> ``[*]``), so it names one file.

    :param path: a file path as it is on disk.
    """
    return _GLOB_CHARS.sub(r"[\1]", path)


def is_inside(root: Path, path: Path) -> bool:
    """Whether ``path`` (resolved) is ``root`` (resolved) or lies under it."""
    return path == root or root in path.parents


@dataclass
class LinkPolicy:
    """Follows links that stay inside ``root``; counts and logs the ones that do not.

    :param root: the lake root (resolved once here).
    """

    root: Path
    refused: list[dict[str, str]] = field(default_factory=list)
    _seen_dirs: set[Path] = field(default_factory=set)
    _seen_files: set[Path] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.root = Path(self.root).expanduser().resolve()

    def resolve(self, path: Path) -> Path | None:
        """The resolved ``path`` when it exists inside the root; ``None`` (refusal recorded) otherwise."""
        try:
            real = path.resolve(strict=True)
        except (OSError, RuntimeError) as exc:  # a dangling link or a loop
            self._refuse(path, f"unresolvable link ({type(exc).__name__})")
            return None
        if not is_inside(self.root, real):
            self._refuse(path, "resolves outside the lake root")
            return None
        return real

    def enter_dir(self, path: Path) -> bool:
        """Whether to descend into folder ``path``: inside the root and not visited yet."""
        real = self.resolve(path) if path.is_symlink() else path.resolve()
        if real is None:
            return False
        if real in self._seen_dirs:
            log.warning("folder %s was reached before (a link to it); read once", _shown(path))
            return False
        self._seen_dirs.add(real)
        return True

    def accept_file(self, path: Path) -> bool:
        """Whether file ``path`` may be read: a regular file, or a link resolving to one inside the root."""
        if path.is_symlink():
            real = self.resolve(path)
            if real is None or not real.is_file():
                return False
        elif path.is_file():
            real = path.resolve()
        else:
            return False
        if real in self._seen_files:
            log.warning("file %s was listed before (a link to it); read once", _shown(path))
            return False
        self._seen_files.add(real)
        return True

    def _refuse(self, path: Path, reason: str) -> None:
        self.refused.append({"path": str(path), "reason": f"symbolic link refused: {reason}"})
        log.error("refused %s: symbolic link %s", _shown(path), reason)

    def walk(self, base: Path) -> Iterator[tuple[Path, list[str], list[str]]]:
        """Like ``os.walk(base)`` top-down, sorted, following links by this policy (dot-names skipped).

        The caller may prune the yielded folder list in place, as with ``os.walk``.
        """
        if not base.is_dir() or not self.enter_dir(base):
            return
        stack = [base]
        while stack:
            here = stack.pop()
            try:
                entries = sorted(os.scandir(here), key=lambda e: e.name)
            except OSError as exc:
                log.error("cannot list %s: %s", _shown(here), exc.strerror)
                continue
            dirs, files = [], []
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                path = Path(entry.path)
                try:
                    is_dir = entry.is_dir(follow_symlinks=True)
                except OSError:  # a link loop: refused (and counted) by accept_file below
                    is_dir = False
                if is_dir:
                    dirs.append(entry.name)
                elif self.accept_file(path):
                    files.append(entry.name)
            yield here, dirs, files
            stack.extend(here / d for d in reversed(dirs) if self.enter_dir(here / d))


def _shown(path: Path) -> str:
    from seclake_ml.display import escape

    return escape(str(path))[0][-300:]
