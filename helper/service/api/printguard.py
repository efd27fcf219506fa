"""The one-click print guard: a certificate whose barcode disagrees is printed only on request.

1. A certificate whose ``verification`` is ``mismatch`` (the barcode disagrees with the mail) or
   ``invalid_signature`` is not printed by a plain print request: the API answers 409
   ``confirmation_required``; the panel then shows what differs and asks the secretary.
2. A print request carrying ``{"confirm_unverified": true}`` prints it; the audit trail records
   the confirmation with the verification status and the names of the differing fields (never their
   values: the trail holds no patient data).
"""

from __future__ import annotations

from typing import Any

NEEDS_CONFIRMATION = ("mismatch", "invalid_signature")
MESSAGE = (
    "Le code-barres signé de ce certificat ne correspond pas au courriel, ou sa signature est invalide : "
    "vérifiez le document, puis confirmez l'impression."
)


def check(cert: dict[str, Any], body: dict[str, Any]) -> tuple[bool, str]:
    """(may print, audit detail) for a print request ``body`` on ``cert`` (its public object)."""
    verification = cert.get("verification") or {}
    status = verification.get("status")
    if status not in NEEDS_CONFIRMATION:
        return True, ""
    if body.get("confirm_unverified") is not True:
        return False, ""
    fields = ",".join(verification.get("fields") or [])
    return True, f"confirmation={status}" + (f" champs={fields}" if fields else "")
