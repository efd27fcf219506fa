"""A machine-wide lock for the system set-up harnesses (installs, daemons, default printer)."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def file_lock(path: str | Path, shared: bool = False) -> Iterator[None]:
    """``flock`` on ``path`` (exclusive, or ``shared`` with other shared holders), held for the ``with``
    block, across processes."""
    with open(path, "a+") as fh:
        with contextlib.suppress(OSError):
            os.chmod(path, 0o666)
        fcntl.flock(fh, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
