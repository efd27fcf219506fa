"""The parse-time budget: how long one message may take, and parsing a pushed message within it.

1. :func:`parse_budget` gives the budget per message (``PARSE_BUDGET_SECONDS``, or the
   ``SIDEP_HELPER_PARSE_BUDGET`` environment variable, meant for tests and IT).
2. The ingest of files applies it in its worker pool (``helper.index.ingest``).
3. A message pushed to the service (:func:`parse_within_budget`) is parsed in one long-lived
   worker process started on first use; over budget, the worker is killed and replaced and the
   message is quarantined ``too_slow``; the service goes on.
"""

from __future__ import annotations

import atexit
import os
import threading
from typing import Any

from helper.parse.message import Outcome, ParseConfig, parse_message
from helper.parse.trust import TrustPolicy

#: Seconds one message may take to parse (above the PDF reader's own 10 s limit). Tests and IT
#: may change it with the ``SIDEP_HELPER_PARSE_BUDGET`` environment variable.
PARSE_BUDGET_SECONDS = 30.0


def parse_budget() -> float:
    """The parse-time budget per message, in seconds."""
    try:
        value = float(os.environ.get("SIDEP_HELPER_PARSE_BUDGET", ""))
    except ValueError:
        return PARSE_BUDGET_SECONDS
    return value if value > 0 else PARSE_BUDGET_SECONDS


_push_pool: Any = None
_push_lock = threading.Lock()


def _parse_pushed(args: tuple[bytes, TrustPolicy]) -> list[Outcome]:
    raw, trusted = args
    try:
        return parse_message(raw, ParseConfig(trust=trusted))
    except Exception as exc:  # noqa: BLE001 - never let one message break the service
        return [Outcome("quarantined", reason="malformed", detail=f"{type(exc).__name__}: {exc}")]


def parse_within_budget(raw: bytes, trusted: TrustPolicy) -> list[Outcome]:
    """Parse a pushed message in the service's parse worker (started once, spawned: the service has
    threads), within the parse-time budget; in this process only if no worker can be started."""
    from helper.index.pool import BudgetPool, PoolBroken

    global _push_pool
    with _push_lock:
        try:
            if _push_pool is None:
                budget = parse_budget()
                _push_pool = BudgetPool(
                    1, _parse_pushed, budget=budget, start_method="spawn",
                    on_timeout=lambda _: [Outcome("quarantined", reason="too_slow",
                                                  detail=f"analyse interrompue après {budget:g} s")],
                    on_crash=lambda _: [Outcome("quarantined", reason="malformed",
                                                detail="l'analyse de ce message a arrêté son processus")],
                )
                atexit.register(_push_pool.close)
            return _push_pool.run_one((raw, trusted))
        except PoolBroken:
            return _parse_pushed((raw, trusted))
