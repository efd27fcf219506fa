"""The extensions' fixed identities, in ONE place (helper defaults, native-messaging manifests, policies).

1. Chrome and Edge name an extension by its public key: the ``key`` of
   ``extension/src/manifest.webmail.json`` (base64 DER SubjectPublicKeyInfo, committed; the private key
   that signs the ``.crx`` stays outside the repository). The id is the SHA-256 of that DER, first 32
   hex digits written with the letters a-p (0 → a … f → p): ``chromium_id()`` computes it, and a test
   checks that ``CHROMIUM_IDS`` equals the id of the committed key.
2. Firefox and Thunderbird name it by the gecko id written in both manifests
   (``browser_specific_settings.gecko.id``). Their extension *origins* are ``moz-extension://<UUID>``
   with a random UUID per profile, so the helper cannot list them: the token protects them.

This module is a leaf: it imports nothing from the package (``config`` and ``service`` read it).
"""

from __future__ import annotations

import base64
import hashlib

#: The webmail extension for Chrome, Edge and Chromium (id of the committed manifest key).
CHROMIUM_ID = "obmllmcjdneckldfmhicjcbgimdpklep"
#: Every Chromium-family id we ship (Edge reads only the first host manifest it finds: list them all).
CHROMIUM_IDS: tuple[str, ...] = (CHROMIUM_ID,)
#: Origins the helper accepts by default, as browsers send them (no trailing slash).
CHROMIUM_ORIGINS: tuple[str, ...] = tuple(f"chrome-extension://{i}" for i in CHROMIUM_IDS)

#: The add-on id of the Firefox (webmail) and Thunderbird extensions (same id in both manifests).
GECKO_ID = "sidep-helper@sidep-helper.local"
GECKO_IDS: tuple[str, ...] = (GECKO_ID,)


def chromium_id(key_b64: str) -> str:
    """The Chrome/Edge extension id of a manifest ``key`` (base64 DER SubjectPublicKeyInfo)."""
    der = base64.b64decode("".join(key_b64.split()), validate=True)
    digest = hashlib.sha256(der).hexdigest()[:32]
    return "".join(chr(ord("a") + int(c, 16)) for c in digest)
