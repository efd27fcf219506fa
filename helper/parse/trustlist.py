"""The barcode trust list: public keys IT installs to check 2D-DOC and EU DCC signatures.

Layout of the folder named by ``barcode_trust_list`` (see docs/verification.md):

- ``2d-doc/<CA><CERT>.pem``: a 2D-DOC public key (``-----BEGIN PUBLIC KEY-----``) or certificate
  (``-----BEGIN CERTIFICATE-----``), named by its certificate-authority id and certificate id as the
  barcode header gives them, e.g. ``2d-doc/FR01AB1C.pem``;
- ``dcc/<kid>.pem``: a DCC signer certificate or public key, named by its key id in base64url
  (``+`` → ``-``, ``/`` → ``_``, no ``=``);
- ``2d-doc.json`` / ``dcc.json``: the same in bulk, ``{"FR01AB1C": "<PEM or base64 DER>"}`` and
  ``{"<kid in base64>": "<PEM or base64 DER>"}``, as the published lists give them.

Keys are read when first asked for, once per process. A key that cannot be read counts as absent.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

_SAFE_NAME = re.compile(r"[A-Za-z0-9_-]{1,100}")
MAX_JSON_BYTES = 32 * 1024 * 1024


class TrustList:
    def __init__(self, folder: str | Path | None) -> None:
        self.folder = Path(folder) if folder else None
        self._bulk: dict[str, dict[str, str]] = {}
        self._cache: dict[tuple[str, str], Any] = {}

    def key(self, kind: str, key_id: str) -> Any | None:
        """The public key for ``kind`` (``2d-doc`` or ``dcc``) and ``key_id`` (``FR01AB1C``, or the
        DCC kid in base64), or None when the list does not hold it."""
        if (kind, key_id) not in self._cache:
            self._cache[(kind, key_id)] = self._load(kind, key_id)
        return self._cache[(kind, key_id)]

    def _load(self, kind: str, key_id: str) -> Any | None:
        if self.folder is None:
            return None
        name = key_id if kind == "2d-doc" else key_id.replace("+", "-").replace("/", "_").rstrip("=")
        text = None
        if _SAFE_NAME.fullmatch(name):
            path = self.folder / kind / f"{name}.pem"
            try:
                text = path.read_text(encoding="ascii", errors="replace")
            except OSError:
                text = None
        if text is None:
            text = self._bulk_entry(kind, key_id)
        return public_key(text) if text else None

    def _bulk_entry(self, kind: str, key_id: str) -> str | None:
        if kind not in self._bulk:
            entries: dict[str, str] = {}
            path = self.folder / f"{kind}.json" if self.folder else None
            try:
                if path is not None and path.is_file() and path.stat().st_size <= MAX_JSON_BYTES:
                    loaded = json.loads(path.read_text(encoding="utf-8"))
                    if isinstance(loaded, dict):
                        entries = {str(k): v for k, v in loaded.items() if isinstance(v, str)}
            except (OSError, ValueError):
                entries = {}
            self._bulk[kind] = entries
        return self._bulk[kind].get(key_id)


def public_key(text: str) -> Any | None:
    """A public key from PEM (key or certificate) or base64 DER (SubjectPublicKeyInfo or certificate)."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import load_der_public_key, load_pem_public_key

    text = text.strip()
    try:
        if "-----BEGIN CERTIFICATE-----" in text:
            return x509.load_pem_x509_certificate(text.encode("ascii")).public_key()
        if "-----BEGIN" in text:
            return load_pem_public_key(text.encode("ascii"))
        der = base64.b64decode(text, validate=False)
        try:
            return load_der_public_key(der)
        except ValueError:
            return x509.load_der_x509_certificate(der).public_key()
    except (ValueError, TypeError, UnicodeEncodeError):
        return None
