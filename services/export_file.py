"""Write an export file whole or not at all: a new 0600 file beside the target, renamed onto it when complete.

An export holds personal data (P9). Opening the target itself for writing truncated an earlier
export before the new one existed (a failure then lost both), wrote through a symlink planted at
the path (truncating whatever it pointed to), and kept an existing file's mode, 0644 say, so others
could read the new export. Here the data goes to a new file that only its owner can read, created
in the target's directory (so the rename stays on one file system and is atomic), flushed to disk,
then renamed over the target: the path shows the old file until it shows the complete new one.
The rename replaces a symlink at the path, never its pointee. A failure removes the new file and
leaves the target as it was.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import BinaryIO


@contextmanager
def replacing(target: Path) -> Iterator[BinaryIO]:
    """A handle on a new file, 0600; renamed onto ``target`` if the block ends without an exception.

    Raises OSError before the block runs when the file cannot be created there (no such
    directory, no permission, the target is a directory), so nothing is exported that cannot be
    delivered.
    """
    if target.is_dir():
        raise IsADirectoryError(errno.EISDIR, "it is a directory", str(target))
    directory = target.parent
    descriptor, temporary = tempfile.mkstemp(dir=directory, prefix=f".{target.name}.", suffix=".partial")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    _sync_directory(directory)


def _sync_directory(directory: Path) -> None:
    """Make the rename itself durable; a file system that cannot sync a directory is no error."""
    with suppress(OSError):
        descriptor = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
