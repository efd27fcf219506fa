"""The API token: 256 random bits, created at first run, stored 0600 in the data directory.

The extension sends it as ``Authorization: Bearer <token>``; it never travels in a URL.
"""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

from helper.index.store import secure_dir

TOKEN_FILE = "token"


def token_path(data_dir: Path) -> Path:
    return data_dir / TOKEN_FILE


def read_or_create(data_dir: Path) -> str:
    path = token_path(data_dir)
    try:
        token = path.read_text(encoding="ascii").strip()
        if len(token) >= 22:  # ≥ 128 bits in URL-safe base64
            return token
    except FileNotFoundError:
        pass
    return rotate(data_dir)


def rotate(data_dir: Path) -> str:
    """Write a fresh token (the old one stops working at once for a running service)."""
    secure_dir(data_dir)
    token = secrets.token_urlsafe(32)
    path = token_path(data_dir)
    tmp = path.with_name(f".{TOKEN_FILE}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(token + "\n")
    os.replace(tmp, path)
    return token


def matches(expected: str, presented: str) -> bool:
    """Constant-time comparison."""
    return hmac.compare_digest(expected.encode("ascii"), presented.encode("ascii", "replace"))
