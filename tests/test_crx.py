"""``extension/build --crx``: the signed CRX3 for Chrome and Edge, packed with a throwaway key made here.

The real private key stays outside the repository, so the test makes its own: the build refuses it
(it would give the .crx another id than the committed manifest key), and with ``--other-key`` packs a
.crx whose signature, crx id and packed manifest key are checked here with ``cryptography``.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import struct
import subprocess
import zipfile
from pathlib import Path

import browser
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from helper.extension_ids import CHROMIUM_ID, chromium_id

CRX = Path("dist") / "sidep-helper-webmail.crx"  # in the build's copy of extension/


def throwaway_key(path: Path) -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def build(work: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    """``extension/build --quiet *args`` on a copy of the sources in ``work`` (the work tree's dist/ is
    left alone); without the key variables of the caller's environment. Returns the run and the copy."""
    copy = work / "extension"
    return browser.build_copy(copy, *args, env={"PATH": "/usr/bin:/bin"}), copy


def fields(data: bytes) -> list[tuple[int, bytes]]:
    """The length-delimited fields of a protobuf message (all CRX3 uses)."""
    out, i = [], 0

    def varint() -> int:
        nonlocal i
        value, shift = 0, 0
        while True:
            byte = data[i]
            i += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                return value

    while i < len(data):
        tag = varint()
        assert tag & 7 == 2, "only length-delimited fields in a CRX3 header"
        length = varint()
        out.append((tag >> 3, data[i:i + length]))
        i += length
    return out


def test_a_key_that_is_not_the_manifests_is_refused(tmp_path: Path) -> None:
    throwaway_key(tmp_path / "other.pem")
    proc, copy = build(tmp_path / "other", "--crx", "--key", str(tmp_path / "other.pem"))
    assert proc.returncode == 1
    assert "ne correspond pas à la clé publique du manifeste" in proc.stderr
    assert not (copy / CRX).exists()
    missing, _ = build(tmp_path / "none", "--crx")
    assert missing.returncode == 1 and "SIDEP_EXTENSION_KEY" in missing.stderr


def test_crx3_signed_with_a_throwaway_key(tmp_path: Path) -> None:
    public = throwaway_key(tmp_path / "throwaway.pem")
    proc, copy = build(tmp_path, "--crx", "--key", str(tmp_path / "throwaway.pem"), "--other-key")
    assert proc.returncode == 0, proc.stderr
    data = (copy / CRX).read_bytes()
    magic, version, header_len = data[:4], *struct.unpack("<II", data[4:12])
    assert magic == b"Cr24" and version == 3
    header, archive = data[12:12 + header_len], data[12 + header_len:]
    top = fields(header)
    proofs = [value for number, value in top if number == 2]
    signed_data = next(value for number, value in top if number == 10000)
    assert len(proofs) == 1
    proof = dict(fields(proofs[0]))
    assert proof[1] == public
    crx_id = dict(fields(signed_data))[1]
    assert crx_id == hashlib.sha256(public).digest()[:16]
    signed = b"CRX3 SignedData\x00" + struct.pack("<I", len(signed_data)) + signed_data + archive
    loaded = serialization.load_der_public_key(public)
    assert isinstance(loaded, rsa.RSAPublicKey)
    loaded.verify(proof[2], signed, padding.PKCS1v15(), hashes.SHA256())  # raises when forged
    # the packed manifest carries that key, so the id Chrome computes is the crx id
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        names = set(zf.namelist())
    assert base64.b64decode(manifest["key"]) == public
    expected = "".join(chr(ord("a") + (b >> 4)) + chr(ord("a") + (b & 15)) for b in crx_id)
    assert chromium_id(manifest["key"]) == expected != CHROMIUM_ID
    assert "src/background/webmail.js" in names and "src/background/thunderbird.js" not in names
    # the unpacked build keeps the committed key: the fixed id
    unpacked = json.loads((copy / "dist/webmail/manifest.json").read_text(encoding="utf-8"))
    assert chromium_id(unpacked["key"]) == CHROMIUM_ID
