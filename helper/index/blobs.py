"""Private files of the data directory: 0700 folders, 0600 files, PDFs stored by their hash.

``BlobStore`` keeps each certificate PDF once, as ``pdf/ab/abcdef….pdf`` (its SHA-256, never a
mail-given name):

1. a worker writes the bytes to a temporary file in the target folder, then renames it into place
   (atomic: a reader never sees half a PDF);
2. the database row that refers to the hash is committed afterwards, by the main process;
3. a blob whose row was never committed (a run killed in between, a duplicate whose row was not
   kept) is an orphan with a correct name: the next run reuses it, and the purge sweeps it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path


def secure_dir(path: Path) -> Path:
    """Create ``path`` (and parents) as 0700 and make sure it stays so."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if os.name == "posix" and (path.stat().st_mode & 0o777) != 0o700:
        os.chmod(path, 0o700)
    return path


def write_private(path: Path, data: bytes) -> None:
    """Write ``path`` as a 0600 file, atomically (temporary file, then rename)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0), 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class BlobStore:
    """PDF files stored once each under their SHA-256 (files 0600, folders 0700)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._dirs: set[str] = set()

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / f"{sha256}.pdf"

    def put(self, sha256: str, data: bytes) -> None:
        """Write ``data`` under its hash unless already there."""
        folder = os.path.join(self.root, sha256[:2])
        target = os.path.join(folder, f"{sha256}.pdf")
        if folder not in self._dirs:
            secure_dir(Path(folder))
            self._dirs.add(folder)
        try:
            if os.path.getsize(target) == len(data):
                return
        except OSError:
            pass
        write_private(Path(target), data)

    def get(self, sha256: str) -> bytes | None:
        """The PDF bytes, verified against their hash; None if absent or damaged."""
        try:
            data = self.path(sha256).read_bytes()
        except OSError:
            return None
        return data if hashlib.sha256(data).hexdigest() == sha256 else None

    def remove(self, sha256: str) -> None:
        self.path(sha256).unlink(missing_ok=True)
