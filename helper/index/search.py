"""Search the index: the query language a secretary types, and its ranking.

A query is split into terms:

- an INS (13 or 15 characters, spaces allowed: ``2 85 05 2A 006 084 36``) matches exactly;
- a date ``dd/mm/yyyy`` (``-`` or ``.`` too), ``ddmmyyyy`` or ``yyyy-mm-dd`` matches the birth
  date (an 8-digit number also matches a dossier number of those digits);
- any other term with a digit is a dossier number, matched exactly;
- every other word is a name prefix, matched against last and first names in any order,
  ignoring case, accents, hyphens, apostrophes and spaces inside particles.

All terms must match. Results: exact name words first, then prefixes, each most recent
sampling first. When nothing matches, name terms of 4+ letters are retried with one typo
allowed (two for 8+ letters). When still nothing matches and the query named a dossier that
the purge removed (or that was already expired when it arrived), the answer carries
``"purged": {"retention_days": N}`` (from the keyed-hash tombstones, helper.index.lifecycle).
"""

from __future__ import annotations

import re
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helper.index import lifecycle
from helper.index.store import TYPO_MIN_TOKEN, dossier_key, public
from helper.parse.identifiers import looks_like_ins, normalize_finess
from helper.parse.text import parse_date, words

DEFAULT_LIMIT = 20
MAX_LIMIT = 500
TYPO_ONE_EDIT = 4
TYPO_TWO_EDITS = 8
LONGEST_INDEXED_PREFIX = 6  # the FTS table's largest prefix index (store.SCHEMA)
MAX_PREFIX_EXPANSION = 64
COUNT_CAP = 1000

_DATE_TERM = re.compile(r"^(\d{1,2}[/.\-]\d{1,2}[/.\-]\d{4}|\d{4}-\d{2}-\d{2})$")
_INS_PIECE = re.compile(r"^(\d+|2[AaBb]|\d*2[AaBb]\d*)$")


@dataclass
class Query:
    names: list[str] = field(default_factory=list)
    dossiers: list[str] = field(default_factory=list)
    dates: list[str] = field(default_factory=list)  # yyyymmdd
    date_or_dossier: list[str] = field(default_factory=list)  # 8 digits that are both
    ins: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.names or self.dossiers or self.dates or self.date_or_dossier or self.ins)


def parse_query(text: str) -> Query:
    q = Query()
    raw_terms = text.split()
    i = 0
    while i < len(raw_terms):
        # An INS may be typed in groups: try the longest run of digit groups first.
        taken = _ins_run(raw_terms, i)
        if taken:
            n, ins = taken
            q.ins.append(ins)
            i += n
            continue
        term = raw_terms[i]
        i += 1
        if _DATE_TERM.match(term):
            d = parse_date(term)
            if d:
                q.dates.append(d.strftime("%Y%m%d"))
                continue
        if term.isdigit() and len(term) == 8:
            d = parse_date(term)
            if d and 1900 <= d.year <= 2100:
                q.date_or_dossier.append(d.strftime("%Y%m%d") + "|" + term)
                continue
        if any(ch.isdigit() for ch in term):
            key = dossier_key(term)
            if key:
                q.dossiers.append(key)
            continue
        q.names.extend(words(term))
    return q


def _ins_run(terms: list[str], start: int) -> tuple[int, str] | None:
    joined = ""
    best: tuple[int, str] | None = None
    for j in range(start, min(len(terms), start + 9)):
        piece = terms[j]
        if not _INS_PIECE.match(piece):
            break
        joined += piece.upper()
        if len(joined) > 15:
            break
        if len(joined) in (13, 15) and looks_like_ins(joined):
            best = (j - start + 1, joined)
    return best


def _quote(token: str) -> str:
    return '"' + token.replace('"', "") + '"'


@dataclass
class Hit:
    id: int
    match: str


class Searcher:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def search(
        self, text: str, *, site: str | None = None, limit: int = DEFAULT_LIMIT, to_deliver: bool = False
    ) -> dict[str, Any]:
        """``{"results": [...], "total": N, "total_exact": bool}`` for a query typed by the user.

        ``total`` counts every match, beyond the page, up to ``COUNT_CAP``: past that it is
        ``COUNT_CAP`` with ``total_exact`` false ("plus de 1000"). Counting every one of the
        30,000 MARTIN of a 1M-certificate index would cost more than the search itself, for a
        figure no one pages through.

        ``to_deliver`` keeps only certificates not yet handed over to the patient.
        """
        limit = max(1, min(int(limit), MAX_LIMIT))
        self._undelivered = to_deliver
        query = parse_query(text)
        site_key = normalize_finess(site).lower() if site else None
        if query.empty:
            return self._recent(site_key, limit)
        constraints = self._constraints(query, site_key)
        hits: list[Hit] = []
        total = 0
        if query.names:
            exact = " AND ".join(constraints + [f"names:{_quote(t)}" for t in query.names])
            prefix = " AND ".join(constraints + [self._prefix(t) for t in query.names])
            total = self._count(prefix)
            if total:
                hits = self._ids(exact, limit, "exact")
                if len(hits) < limit:
                    seen = {h.id for h in hits}
                    hits += [h for h in self._ids(prefix, limit + len(hits), "prefix") if h.id not in seen]
            else:
                hits, total = self._typo(query, constraints, limit)
        else:
            expr = " AND ".join(constraints)
            total = self._count(expr)
            hits = self._ids(expr, limit, "exact") if total else []
        answer = self._answer(hits[:limit], total)
        dossiers = query.dossiers + [both.split("|")[1] for both in query.date_or_dossier]
        if not answer["results"] and dossiers:
            purged = lifecycle.tombstone(self.db, _hash_key(self.db), site_key, dossiers)
            if purged:
                answer["purged"] = purged
        return answer

    def _constraints(self, query: Query, site_key: str | None) -> list[str]:
        parts = [f"dossier:{_quote(d)}" for d in query.dossiers]
        parts += [f"birth:{_quote(d)}" for d in query.dates]
        for both in query.date_or_dossier:
            date, number = both.split("|")
            parts.append(f"(birth:{_quote(date)} OR dossier:{_quote(number)})")
        for ins in query.ins:
            parts.append(f"ins:{_quote(ins.lower())}" + ("*" if len(ins) == 13 else ""))
        if site_key:
            parts.append(f"site:{_quote(site_key)}")
        return parts

    def _prefix(self, term: str) -> str:
        """``names:"term"*`` — or, past the indexed prefix lengths, the explicit words it stands for.

        FTS5 answers prefixes of 2 to 6 letters from its prefix indexes; a longer one would make
        it merge every matching word's list in full before stopping at LIMIT. Our vocabulary
        turns ``lambert*`` into ``(lambert OR lamberti …)``, which FTS5 merges lazily. A
        one-letter word (the d of d'Almeida, an initial) is matched whole: as a prefix it would
        mean every word with that letter, which no prefix index covers.
        """
        if len(term) == 1:
            return f"names:{_quote(term)}"
        if len(term) > LONGEST_INDEXED_PREFIX:
            words = [
                r[0]
                for r in self.db.execute(
                    "SELECT token FROM vocab WHERE token >= ? AND token < ? LIMIT ?",
                    (term, term + "\x7f", MAX_PREFIX_EXPANSION + 1),
                )
            ]
            if 0 < len(words) <= MAX_PREFIX_EXPANSION:
                return "names:(" + " OR ".join(_quote(w) for w in words) + ")"
        return f"names:{_quote(term)}*"

    _undelivered = False
    _JOIN = " JOIN certificates c ON c.id = f.rowid AND c.delivered_at IS NULL"

    def _count(self, expr: str) -> int:
        """Matches of ``expr``, counted up to COUNT_CAP + 1 (enough to tell "more than the cap")."""
        join = self._JOIN if self._undelivered else ""
        return self.db.execute(
            f"SELECT count(*) FROM (SELECT 1 FROM certificates_fts f{join} WHERE certificates_fts MATCH ? "
            f"LIMIT {COUNT_CAP + 1})",
            (expr,),
        ).fetchone()[0]

    def _ids(self, expr: str, limit: int, match: str) -> list[Hit]:
        join = self._JOIN if self._undelivered else ""
        rows = self.db.execute(
            f"SELECT f.rowid FROM certificates_fts f{join} WHERE certificates_fts MATCH ? ORDER BY f.rowid DESC LIMIT ?",
            (expr, limit),
        ).fetchall()
        return [Hit(r[0], match) for r in rows]

    def _rows(self, hits: list[Hit]) -> list[dict[str, Any]]:
        if not hits:
            return []
        marks = ",".join("?" * len(hits))
        rows = {
            r["id"]: r
            for r in self.db.execute(f"SELECT * FROM certificates WHERE id IN ({marks})", [h.id for h in hits])
        }
        out = []
        for h in hits:
            row = rows.get(h.id)
            if row is not None:
                item = public(row)
                item["match"] = h.match
                out.append(item)
        return out

    def _recent(self, site_key: str | None, limit: int) -> dict[str, Any]:
        if site_key:
            expr = f"site:{_quote(site_key)}"
            return self._answer(self._ids(expr, limit, "recent"), self._count(expr))
        where = " WHERE delivered_at IS NULL" if self._undelivered else ""
        ids = [
            Hit(r[0], "recent")
            for r in self.db.execute(f"SELECT id FROM certificates{where} ORDER BY id DESC LIMIT ?", (limit,))
        ]
        total = self.db.execute(
            f"SELECT count(*) FROM (SELECT 1 FROM certificates{where} LIMIT {COUNT_CAP + 1})"
        ).fetchone()[0]
        return self._answer(ids, total)

    def _answer(self, hits: list[Hit], total: int) -> dict[str, Any]:
        return {"results": self._rows(hits), "total": min(total, COUNT_CAP), "total_exact": total <= COUNT_CAP}

    # --- typo fallback ------------------------------------------------------------------------

    def _typo(self, query: Query, constraints: list[str], limit: int) -> tuple[list[Hit], int]:
        """Retry name terms with one (4+ letters) or two (8+ letters) edits allowed."""
        options: list[dict[str, int]] = []
        for term in query.names:
            found = {term: 0}
            if len(term) >= TYPO_ONE_EDIT:
                found.update(self.typo_candidates(term))
            options.append(found)
        if all(len(o) == 1 for o in options):
            return [], 0
        hits: list[Hit] = []
        seen: set[int] = set()
        total = 0
        for max_distance in (1, 2):
            groups = []
            for term, found in zip(query.names, options, strict=True):
                alternatives = [f"{_quote(term)}*"] + [_quote(t) for t, d in found.items() if 0 < d <= max_distance]
                groups.append("names:(" + " OR ".join(alternatives) + ")")
            expr = " AND ".join(constraints + groups)
            total = self._count(expr)
            if total and len(hits) < limit:
                hits += [h for h in self._ids(expr, limit, "typo") if h.id not in seen]
                seen = {h.id for h in hits}
        return hits, total

    def typo_candidates(self, term: str) -> dict[str, int]:
        """Indexed name words within the allowed edit distance of ``term`` → their distance."""
        max_edits = 2 if len(term) >= TYPO_TWO_EDITS else 1
        by_length = _vocabulary(self.db)
        choices: list[str] = []
        for n in range(max(TYPO_MIN_TOKEN, len(term) - max_edits), len(term) + max_edits + 1):
            choices.extend(by_length.get(n, ()))
        from rapidfuzz import process  # only the typo fallback needs it
        from rapidfuzz.distance import OSA

        found = process.extract(term, choices, scorer=OSA.distance, score_cutoff=max_edits, limit=None)
        return {token: int(d) for token, d, _ in found if d > 0}


_VOCAB_CACHE: dict[str, tuple[str, int, dict[int, list[str]]]] = {}
_VOCAB_LOCK = threading.Lock()
_KEYS: dict[str, bytes | None] = {}


def _db_path(db: sqlite3.Connection) -> str:
    return next((row[2] for row in db.execute("PRAGMA database_list") if row[1] == "main"), "") or str(id(db))


def _hash_key(db: sqlite3.Connection) -> bytes | None:
    """The data directory's keyed-hash secret (beside the database), once read; None if none yet."""
    path = _db_path(db)
    if _KEYS.get(path) is None:
        _KEYS[path] = lifecycle.load_key(Path(path).parent, create=False) if Path(path).is_file() else None
    return _KEYS[path]


def _vocabulary(db: sqlite3.Connection) -> dict[int, list[str]]:
    """Name words of the index grouped by length, cached per database and refreshed incrementally.

    Shared by the service's reader threads. A purge bumps ``vocab_generation`` in ``meta``: the
    cache is then dropped and rebuilt, so no purged name lingers in memory either.
    """
    key = _db_path(db)
    row = db.execute("SELECT value FROM meta WHERE key = 'vocab_generation'").fetchone()
    generation = row[0] if row else ""
    with _VOCAB_LOCK:
        seen, last, by_length = _VOCAB_CACHE.get(key, (generation, 0, {}))
        if seen != generation:
            last, by_length = 0, {}
        rows = db.execute("SELECT id, token FROM vocab WHERE id > ? ORDER BY id", (last,)).fetchall()
        if rows or seen != generation:
            grown = {n: list(words) for n, words in by_length.items()}
            for _, token in rows:
                grown.setdefault(len(token), []).append(token)
            by_length = grown
            _VOCAB_CACHE[key] = (generation, rows[-1][0] if rows else 0, by_length)
        return by_length
