"""File paths for media: input files that must exist, output names that never clobber an existing file."""

from __future__ import annotations

import os
from pathlib import Path

from demo_core.errors import DemoInputError

__all__ = [
    "unique_path",
]


def _existing_file(path: str | os.PathLike, name: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise DemoInputError(f"{name}: file {str(path)!r} does not exist")
    if not path.is_file():
        raise DemoInputError(f"{name}: {str(path)!r} is not a file")
    return path


def unique_path(path: str | os.PathLike) -> Path:
    """``path`` if nothing exists there, else the first free ``stem_0001.ext``, ``stem_0002.ext``, ...

    Args:
        path: The path wanted.

    Returns:
        A path that does not exist (at the time of the call).
    """
    path = Path(path)
    if not path.exists():
        return path
    counter = 1
    while True:
        candidate = path.with_name(f"{path.stem}_{counter:04d}{path.suffix}")
        if not candidate.exists():
            return candidate
        counter += 1
