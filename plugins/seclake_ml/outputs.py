"""One policy for every file a command writes: where it may go and what it may replace.

Every writer of a user-named output (``pairs extract --out``, ``ipinsights score --output``,
``ipinsights calibration-sets``, ``ipinsights calibrate --report``) checks its path here first:

* never inside the lake root (an output must not replace or add a lake object);
* never over something that is not a regular file (a folder, a device, a pipe, a socket) and never
  through a symbolic link;
* never over an existing file unless the caller says so (``--force``);
* never under a file (``out.parquet/x``) or in a folder that cannot be written.

Each refusal is an :class:`OutputPathError` (a ``ValueError``) whose one-line message names the path
and says what to do. :func:`write_atomically` then writes through a temporary file in the same folder
and renames it into place, so readers see the old file or the new one, never a partial one.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from seclake_ml.lake.paths import is_inside


class OutputPathError(ValueError):
    """An output path that the policy refuses; the message names the path and the reason."""


def _existing_ancestor(path: Path) -> Path:
    for parent in path.parents:
        if os.path.lexists(parent):
            return parent
    return Path(path.anchor or ".")


def check_output_file(path: str | os.PathLike[str], *, force: bool = False,
                      lake_root: str | os.PathLike[str] | None = None, what: str = "output") -> Path:
    """``path`` as a :class:`~pathlib.Path` once the policy allows writing a file there.

    :param path: the file to write.
    :param force: allow replacing an existing regular file.
    :param lake_root: the local lake root; nothing under it may be written.
    :param what: how the path is named in messages (the option, e.g. ``--out``).
    :raises OutputPathError: naming ``path`` and why it is refused.
    """
    text = os.fspath(path)
    if not text.strip():
        raise OutputPathError(f"{what}: empty path")
    if "\x00" in text:
        raise OutputPathError(f"{what} {text!r}: a path may not contain NUL characters")
    p = Path(text).expanduser()
    target = p.resolve()
    if lake_root:
        root = Path(lake_root).expanduser().resolve()
        if is_inside(root, target):
            raise OutputPathError(f"{what} {text}: lies inside the lake root {root}; write outputs elsewhere")
    if os.path.lexists(p):
        st = os.lstat(p)
        if stat.S_ISLNK(st.st_mode):
            raise OutputPathError(f"{what} {text}: is a symbolic link; name the file itself")
        if stat.S_ISDIR(st.st_mode):
            raise OutputPathError(f"{what} {text}: is a folder; name a file inside it")
        if not stat.S_ISREG(st.st_mode):
            raise OutputPathError(f"{what} {text}: is not a regular file (a device, pipe or socket); refusing to replace it")
        if not force:
            raise OutputPathError(f"{what} {text}: already exists; pass --force to replace it")
    ancestor = _existing_ancestor(p)
    if not ancestor.is_dir():
        raise OutputPathError(f"{what} {text}: lies under {ancestor}, which is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise OutputPathError(f"{what} {text}: folder {ancestor} is not writable")
    return p


def check_output_dir(path: str | os.PathLike[str], *, lake_root: str | os.PathLike[str] | None = None,
                     what: str = "output folder") -> Path:
    """``path`` once the policy allows writing files into it as a folder (existing or to create).

    :param path: the folder.
    :param lake_root: the local lake root; nothing under it may be written.
    :param what: how the path is named in messages.
    :raises OutputPathError: naming ``path`` and why it is refused.
    """
    text = os.fspath(path)
    if not text.strip():
        raise OutputPathError(f"{what}: empty path")
    p = Path(text).expanduser()
    if lake_root:
        root = Path(lake_root).expanduser().resolve()
        if is_inside(root, p.resolve()):
            raise OutputPathError(f"{what} {text}: lies inside the lake root {root}; write outputs elsewhere")
    if os.path.lexists(p) and not p.is_dir():
        raise OutputPathError(f"{what} {text}: is a file, not a folder")
    ancestor = p if p.is_dir() else _existing_ancestor(p)
    if not ancestor.is_dir():
        raise OutputPathError(f"{what} {text}: lies under {ancestor}, which is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise OutputPathError(f"{what} {text}: folder {ancestor} is not writable")
    return p


@contextmanager
def write_atomically(path: Path) -> Iterator[Path]:
    """A temporary path in ``path``'s folder; renamed over ``path`` when the block ends without error.

    The temporary file is removed on any error. The folder is created when missing.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)
