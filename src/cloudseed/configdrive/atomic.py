"""Writing an image so that readers see the old file or the new one, never half.

A hypervisor may open a drive image at any moment, and an operator's
``-o FILE`` may already be attached somewhere: the bytes go to a temporary
file in the same directory (same file system, so the rename is atomic), are
flushed to disk, and are renamed over the target.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

# Leftovers with this prefix are from a write that died; the keeper removes them.
TEMP_PREFIX = ".tmp-"


def write_atomically(path: Path, data: bytes, mode: int) -> None:
    """Replace ``path`` with ``data`` (file mode ``mode``, less the umask) in one step."""
    temp = path.with_name(f"{TEMP_PREFIX}{path.name}.{os.getpid()}.{threading.get_ident()}")
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    # Make the rename itself durable.
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
