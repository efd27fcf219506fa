"""The daily view per site (``sidep-helper report``): what arrived, went out and still waits on one day.

One query per figure over the index (and the dispatch journal when it exists), grouped by site FINESS;
no patient data is read. For day D (local time, as the index stores it) and each site:

- ``received``: certificates indexed on D; ``superseded``: those of them since replaced by a re-issue;
- ``dispatched``: copies to the site's folder completed on D (dispatch journal);
- ``printed`` / ``handed_over``: certificates whose last print / hand-over happened on D;
- ``waiting``: certificates indexed on or before D, not superseded, not handed over (now), and the age in
  days of the oldest of them on D;
- ``unassigned``: certificates currently « à affecter » (FINESS not in the site directory).

:func:`waiting` lists the waiting certificates themselves, oldest first (the panel's « À remettre » tab).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from helper.index.store import Store, public

FIELDS = ("received", "dispatched", "printed", "handed_over", "waiting", "oldest_waiting_days", "superseded",
          "unassigned")


def _journal_exists(store: Store) -> bool:
    return store.db.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'dispatch_journal'").fetchone() is not None


def daily(store: Store, day: dt.date, site: str | None = None) -> dict[str, dict[str, Any]]:
    d = day.isoformat()
    out: dict[str, dict[str, Any]] = {}

    def put(rows: Any, key: str) -> None:
        for finess, value in rows:
            finess = finess or ""
            if site is not None and finess != site:
                continue
            out.setdefault(finess, dict.fromkeys(FIELDS, 0))[key] = value

    q = store.db.execute
    put(q("SELECT site_finess, COUNT(*) FROM certificates WHERE substr(added_at, 1, 10) = ? GROUP BY site_finess",
          (d,)), "received")
    put(q("SELECT site_finess, COUNT(*) FROM certificates WHERE substr(added_at, 1, 10) = ? AND superseded = 1 "
          "GROUP BY site_finess", (d,)), "superseded")
    put(q("SELECT site_finess, COUNT(*) FROM certificates WHERE substr(printed_at, 1, 10) = ? GROUP BY site_finess",
          (d,)), "printed")
    put(q("SELECT site_finess, COUNT(*) FROM certificates WHERE substr(delivered_at, 1, 10) = ? "
          "GROUP BY site_finess", (d,)), "handed_over")
    waiting = q("SELECT site_finess, COUNT(*), MIN(substr(added_at, 1, 10)) FROM certificates "
                "WHERE substr(added_at, 1, 10) <= ? AND superseded = 0 AND delivered_at IS NULL GROUP BY site_finess",
                (d,)).fetchall()
    put([(r[0], r[1]) for r in waiting], "waiting")
    put([(r[0], (day - dt.date.fromisoformat(r[2])).days) for r in waiting], "oldest_waiting_days")
    if _journal_exists(store):
        put(q("SELECT finess, COUNT(*) FROM dispatch_journal WHERE state = 'done' AND substr(done_at, 1, 10) = ? "
              "GROUP BY finess", (d,)), "dispatched")
        put(q("SELECT finess, COUNT(*) FROM dispatch_journal WHERE state = 'unassigned' GROUP BY finess"),
            "unassigned")
    return dict(sorted(out.items()))


def waiting(store: Store, site: str | None = None, limit: int = 100) -> dict[str, Any]:
    """The « À remettre » list: certificates not handed over and not superseded (as ``waiting`` above),
    oldest arrival first, for one site or all; ``total`` counts them all, ``results`` the first ``limit``."""
    where = "superseded = 0 AND delivered_at IS NULL" + (" AND site_finess = ?" if site else "")
    args: tuple[Any, ...] = (site,) if site else ()
    total = store.db.execute(f"SELECT COUNT(*) FROM certificates WHERE {where}", args).fetchone()[0]
    rows = store.db.execute(f"SELECT * FROM certificates WHERE {where} ORDER BY added_at, id LIMIT ?",
                            (*args, limit)).fetchall()
    return {"total": total, "results": [{**public(r), "received_at": r["added_at"]} for r in rows]}
