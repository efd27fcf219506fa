"""The barcode trust list: public keys IT installs to check 2D-DOC and EU DCC signatures.

Layout of the folder named by ``barcode_trust_list`` (see docs/verification.md):

- ``2d-doc/<CA><CERT>.pem``: a 2D-DOC public key (``-----BEGIN PUBLIC KEY-----``) or certificate
  (``-----BEGIN CERTIFICATE-----``), named by its certificate-authority id and certificate id as the
  barcode header gives them, e.g. ``2d-doc/FR01AB1C.pem``;
- ``dcc/<kid>.pem``: a DCC signer certificate or public key, named by its key id in base64url
  (``+`` → ``-``, ``/`` → ``_``, no ``=``);
- ``2d-doc.json`` / ``dcc.json``: the same in bulk, ``{"FR01AB1C": "<PEM or base64 DER>"}`` and
  ``{"<kid in base64>": "<PEM or base64 DER>"}``, as the published lists give them.

Keys are read when first asked for and kept, parsed (:meth:`TrustList.shared`), until their file
changes: each lookup costs two ``stat`` calls on file names worked out once per key. A key that
cannot be read counts as absent.
"""

from __future__ import annotations

import base64
import json
import os
import re
from pathlib import Path
from typing import Any

_SAFE_NAME = re.compile(r"[A-Za-z0-9_-]{1,100}")
MAX_JSON_BYTES = 32 * 1024 * 1024


class TrustList:
    def __init__(self, folder: str | Path | None) -> None:
        self.folder = Path(folder) if folder else None
        self._bulk: dict[str, tuple[tuple[int, ...] | None, dict[str, str]]] = {}
        self._cache: dict[tuple[str, str], tuple[tuple[tuple[int, ...] | None, ...], Any]] = {}
        self._paths: dict[tuple[str, str], tuple[str | None, str]] = {}  # PEM file and bulk file, as text

    @classmethod
    def shared(cls, folder: str | Path | None) -> TrustList:
        """The process's list for ``folder``: keys stay parsed between PDFs, and a file IT adds,
        replaces or removes is seen at the next PDF (each lookup checks its files' size and time)."""
        name = str(folder) if folder else ""
        found = _shared.get(name)
        if found is None:
            found = _shared[name] = cls(folder)
        return found

    def key(self, kind: str, key_id: str) -> Any | None:
        """The public key for ``kind`` (``2d-doc`` or ``dcc``) and ``key_id`` (``FR01AB1C``, or the
        DCC kid in base64), or None when the list does not hold it."""
        if self.folder is None:
            return None
        paths = self._paths.get((kind, key_id))
        if paths is None:
            pem_path = self._pem_path(kind, key_id)
            if len(self._paths) > 10_000:  # key ids come from barcodes: bound what they can make us keep
                self._paths.clear()
            paths = self._paths[(kind, key_id)] = (None if pem_path is None else str(pem_path),
                                                    str(self.folder / f"{kind}.json"))
        pem, bulk = paths
        state = (_stamp(pem) if pem is not None else None, _stamp(bulk))
        cached = self._cache.get((kind, key_id))
        if cached is None or cached[0] != state:
            if len(self._cache) > 10_000:
                self._cache.clear()
            cached = self._cache[(kind, key_id)] = (state, self._load(kind, key_id, None if pem is None else Path(pem)))
        return cached[1]

    def _pem_path(self, kind: str, key_id: str) -> Path | None:
        name = key_id if kind == "2d-doc" else key_id.replace("+", "-").replace("/", "_").rstrip("=")
        return self.folder / kind / f"{name}.pem" if self.folder and _SAFE_NAME.fullmatch(name) else None

    def _load(self, kind: str, key_id: str, pem: Path | None) -> Any | None:
        text = None
        if pem is not None:
            try:
                text = pem.read_text(encoding="ascii", errors="replace")
            except OSError:
                text = None
        if text is None:
            text = self._bulk_entry(kind, key_id)
        return public_key(text) if text else None

    def _bulk_entry(self, kind: str, key_id: str) -> str | None:
        path = self.folder / f"{kind}.json" if self.folder else None
        stamp = _stamp(path) if path is not None else None
        if kind not in self._bulk or self._bulk[kind][0] != stamp:
            entries: dict[str, str] = {}
            try:
                if path is not None and stamp is not None and stamp[1] <= MAX_JSON_BYTES:
                    loaded = json.loads(path.read_text(encoding="utf-8"))
                    if isinstance(loaded, dict):
                        entries = {str(k): v for k, v in loaded.items() if isinstance(v, str)}
            except (OSError, ValueError):
                entries = {}
            self._bulk[kind] = (stamp, entries)
        return self._bulk[kind][1].get(key_id)


_shared: dict[str, TrustList] = {}


def _stamp(path: Path | str) -> tuple[int, ...] | None:
    """What tells a changed file: inode, size, modification and change times (None: no such file)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not (st.st_mode & 0o170000) == 0o100000:  # not a regular file
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def public_key(text: str) -> Any | None:
    """A public key from PEM (key or certificate) or base64 DER (SubjectPublicKeyInfo or certificate)."""
    from cryptography.hazmat.primitives.serialization import load_der_public_key, load_pem_public_key

    text = text.strip()
    try:
        if "-----BEGIN CERTIFICATE-----" in text:
            from cryptography import x509  # only for certificates: some 7 MB more in the reader child

            return x509.load_pem_x509_certificate(text.encode("ascii")).public_key()
        if "-----BEGIN" in text:
            return load_pem_public_key(text.encode("ascii"))
        der = base64.b64decode(text, validate=False)
        try:
            return load_der_public_key(der)
        except ValueError:
            from cryptography import x509

            return x509.load_der_x509_certificate(der).public_key()
    except (ValueError, TypeError, UnicodeEncodeError):
        return None
