"""IMAP sources for ``sidep-helper serve``: new mail indexed within seconds, hand-over state shared.

One thread per configured (source, folder) — the folder ``move_processed_to`` included, so that a
moved certificate stays linked to its message — each with its own IMAP connection and its own
connection to the index. A thread loops:

1. connect and log in (``helper.sources.imap.connect``); on failure, record the French reason in
   ``imap_status`` and retry after 1, 2, 4… up to 60 s (a server restart or a network loss heals by
   itself; a refused certificate is retried too, slowly, and shown in ``status`` meanwhile);
2. select the folder, once per connection (after each wait, ``Folder.refresh`` reads its numbers
   again with STATUS and NOOP, and selects again only if UIDVALIDITY changed: a SELECT makes the
   server open the whole mailbox again). A UIDVALIDITY different from the one recorded means the
   UIDs changed: the links of the old UIDs are dropped and the folder is read again from UID 1 —
   messages are matched to certificates already indexed by their Message-ID from their headers
   alone, so nothing is fetched or added twice;
3. and 4. new UIDs (``helper.service.imapread``), by batches: headers first; a message whose
   Message-ID is indexed is linked without being fetched; one that cannot hold a certificate is
   skipped; the others are fetched whole (``BODY.PEEK[]``) by a fetch thread while the parse worker
   pool parses those already fetched, with the same trust rules as any message (spoofs are
   quarantined, never indexed). Each batch's certificates, links and highest UID read are committed
   together: a helper killed mid-batch fetches the batch again and the store recognises what it
   already holds. With ``move_processed_to``, certificate messages are then moved (IMAP MOVE only);
5. keywords: ``$SidepImprime`` / ``$SidepRemis`` of linked messages are read (only those changed
   since the last MODSEQ when the server has CONDSTORE); a change made at another desk is applied
   here (« remis (autre poste) », or the hand-over undone); writes owed after a print, hand-over
   or undo at this desk (``imap_pending``, queued by the API) are done, if PERMANENTFLAGS has ``\\*``;
6. wait: IDLE (the server wakes us when mail arrives or flags change), at most ``poll_seconds``,
   and at once when this desk owes a keyword write (a NOOP first brings mail that came during the
   read into view; what comes after it is announced with IDLE's ``+ idling``); then back to 2.

Logs name sources, folders, counts and French error messages; never a credential, an address,
a subject or a name.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from helper.config import ImapSource, Settings
from helper.index import imapstate
from helper.index.store import Store
from helper.service import imapread
from helper.service.audit import Audit
from helper.sources.imap import (
    KW_DELIVERED,
    KW_PRINTED,
    Folder,
    FolderInfo,
    ImapError,
    connect,
    is_connection_error,
)

log = logging.getLogger("sidep_helper.imap")

BACKOFF_FIRST = 1.0
BACKOFF_MAX = 60.0
FORGET_EVERY_SECONDS = 600
#: Messages whose keywords are read (one FETCH FLAGS) and applied together.
KEYWORD_SLICE = 2000
#: ``status`` of a folder whose PERMANENTFLAGS lacks ``\\*`` (no new keywords: read-only, ACL, full)
NO_KEYWORDS = ("Le serveur n'accepte pas de mots-clés sur ce dossier : l'état « imprimé / remis » partagé entre "
               "postes y est indisponible ; il reste propre à ce poste.")
KEYWORD = {imapstate.PRINTED: KW_PRINTED, imapstate.DELIVERED: KW_DELIVERED}

def _where(exc: BaseException) -> str:
    """File and line where an exception was raised: for developers, without its message (data)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return f"{Path(tb.tb_frame.f_code.co_filename).name}:{tb.tb_lineno}" if tb is not None else "?"


class FolderSync(threading.Thread):
    def __init__(self, settings: Settings, account: ImapSource, folder: str, audit: Audit,
                 audit_lock: threading.Lock, stop: threading.Event) -> None:
        super().__init__(name=f"imap-{account.name}-{folder}", daemon=True)
        self.settings = settings
        self.account = account
        self.folder_name = folder
        self.audit = audit
        self.audit_lock = audit_lock
        self.stop_event = stop
        self.source = account.name
        self._last_forget = 0.0

    # -- loop -------------------------------------------------------------------------------------------
    def run(self) -> None:
        store = imapread.lean_store(self.settings)
        try:
            imapstate.ensure(store)
            backoff = BACKOFF_FIRST
            failed = False  # while retrying, status keeps the failure's state and message
            while not self.stop_event.is_set():
                client = None
                try:
                    if not failed:
                        self._status(store, "connexion")
                    client = connect(self.account)
                    backoff, failed = BACKOFF_FIRST, False
                    self._session(store, Folder(client, self.folder_name))
                except ImapError as exc:
                    log.warning("IMAP %s / %s : %s", self.source, self.folder_name, exc.message)
                    self._status(store, "erreur", error=exc.message, code=exc.code)
                    failed = True
                except Exception as exc:  # noqa: BLE001 - the loop must survive anything
                    if is_connection_error(exc):
                        message = "Connexion perdue avec le serveur ; nouvelle tentative automatique."
                        code = "connection_lost"
                    else:
                        message = f"Erreur inattendue ({type(exc).__name__}) ; nouvelle tentative automatique."
                        code = "internal"
                        log.error("IMAP %s / %s : erreur %s (%s)", self.source, self.folder_name, type(exc).__name__,
                                  _where(exc))
                    log.warning("IMAP %s / %s : %s", self.source, self.folder_name, message)
                    self._status(store, "reconnexion", error=message, code=code)
                    failed = True
                finally:
                    if client is not None:
                        try:
                            client.logout()
                        except Exception:  # noqa: BLE001 - connection already gone
                            pass
                if self.stop_event.wait(backoff):
                    break
                backoff = min(backoff * 2, BACKOFF_MAX)
        finally:
            try:
                self._status(store, "arrêté")
            finally:
                store.close()

    def _status(self, store: Store, state: str, **kwargs: Any) -> None:
        try:
            imapstate.set_status(store, self.source, self.folder_name, state, **kwargs)
        except Exception:  # noqa: BLE001 - a busy index must not stop the sync
            log.warning("IMAP %s / %s : état non enregistré", self.source, self.folder_name)

    def _session(self, store: Store, folder: Folder) -> None:
        imapread.warm_parsers(self.settings, store)
        idle = "en veille (IDLE)" if folder.idle_ok else f"relève toutes les {self.account.poll_seconds} s"
        info = folder.select()  # once per connection; then only what changed (STATUS, NOOP)
        while not self.stop_event.is_set():
            self._status(store, "relève en cours")
            self.sync(store, folder, info)
            if info.keywords_allowed:
                self._status(store, idle, success=True, messages=info.exists)
            else:  # read-only folder, or no room for new keywords: the sync works, the state stays here
                self._status(store, idle, success=True, messages=info.exists, error=NO_KEYWORDS, code="no_keywords")
            if time.monotonic() - self._last_forget > FORGET_EVERY_SECONDS:
                imapstate.forget_purged(store)
                self._last_forget = time.monotonic()
            folder.wait(
                self.account.poll_seconds,
                lambda: self.stop_event.is_set()
                or imapstate.has_pending(store, self.source, self.folder_name),
            )
            info = folder.refresh()

    # -- one sync -----------------------------------------------------------------------------------------
    def sync(self, store: Store, folder: Folder, info: FolderInfo) -> None:
        state = imapstate.folder_state(store, self.source, self.folder_name)
        if state.uidvalidity != info.uidvalidity:
            if state.uidvalidity is not None:
                log.info("IMAP %s / %s : UIDVALIDITY changé, relecture du dossier (sans doublon)",
                         self.source, self.folder_name)
            imapstate.reset_folder(store, self.source, self.folder_name, info.uidvalidity)
            state = imapstate.folder_state(store, self.source, self.folder_name)
        new_links = self._read_new(store, folder, info, state.last_uid)
        self._keywords(store, folder, info, state.modseq, new_links)

    def _read_new(self, store: Store, folder: Folder, info: FolderInfo, last_uid: int) -> list[int]:
        uids = folder.new_uids(last_uid)
        linked, counts = imapread.read_uids(self.settings, self.account, store, folder, info, uids, self.stop_event)
        if uids:
            log.info(
                "IMAP %s / %s : %d message(s) lu(s) — %d nouveau(x), %d déjà connu(s), %d doublon(s), "
                "%d ignoré(s), %d en quarantaine", self.source, self.folder_name, len(uids), counts["new"],
                counts["known"], counts["duplicate"], counts["ignored"], counts["quarantined"],
            )
        return linked

    def _keywords(self, store: Store, folder: Folder, info: FolderInfo, modseq: int | None, new: list[int]) -> None:
        valid = info.uidvalidity

        def apply(seen: dict[int, set[str]]) -> list[tuple[int, str, bool]]:
            states = {uid: (KW_PRINTED in kws, KW_DELIVERED in kws) for uid, kws in seen.items()}
            return imapstate.apply_remote(store, self.source, self.folder_name, valid, states)

        if info.highestmodseq is not None and modseq is not None:
            applied = apply(folder.keywords(None, modseq)) if info.highestmodseq > modseq else []
            uids = new
        else:
            applied, uids = [], imapstate.linked_uids(store, self.source, self.folder_name, valid)
        # by slices: the flags of 100,000 messages at once took ~70 MiB for a moment
        for start in range(0, len(uids), KEYWORD_SLICE):
            applied += apply(folder.keywords(uids[start : start + KEYWORD_SLICE], None))
        if info.highestmodseq is not None:
            imapstate.set_modseq(store, self.source, self.folder_name, info.highestmodseq)
        for cert_id, what, value in applied:
            action = {("printed", True): "printed_elsewhere", ("delivered", True): "delivered_elsewhere",
                      ("delivered", False): "undelivered_elsewhere"}[(what, value)]
            with self.audit_lock:
                self.audit.record(action, [cert_id], f"imap:{self.source}")
        if applied:
            log.info("IMAP %s / %s : %d changement(s) d'état venu(s) d'un autre poste",
                     self.source, self.folder_name, len(applied))
        self._push(store, folder, info)

    def _push(self, store: Store, folder: Folder, info: FolderInfo) -> None:
        pending = imapstate.take_pending(store, self.source, self.folder_name, info.uidvalidity)
        if not pending:
            if imapstate.has_pending(store, self.source, self.folder_name):  # owed to an older UIDVALIDITY
                imapstate.reset_stale_pending(store, self.source, self.folder_name, info.uidvalidity)
            return
        if not info.keywords_allowed:
            imapstate.drop_pending(store, self.source, self.folder_name, info.uidvalidity)
            self._status(store, "connecté", error=NO_KEYWORDS, code="no_keywords")
            return
        # the last value owed per (uid, keyword) wins; writes are grouped by keyword and value
        final: dict[tuple[int, str], int] = {}
        for p in pending:
            final[(p["uid"], p["keyword"])] = p["value"]
        groups: dict[tuple[str, int], list[int]] = {}
        for (uid, what), value in final.items():
            groups.setdefault((what, value), []).append(uid)
        for (what, value), uids in groups.items():
            folder.set_keyword(sorted(uids), KEYWORD[what], bool(value))
        imapstate.done_pending(store, self.source, self.folder_name, info.uidvalidity, pending)


class ImapService:
    """All IMAP folder threads of ``serve``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stop_event = threading.Event()
        self.audit = Audit(settings.data_dir)
        self.audit_lock = threading.Lock()
        self.threads: list[FolderSync] = []
        for account in settings.imap_sources:
            folders = list(account.folders)
            if account.move_processed_to and account.move_processed_to not in folders:
                folders.append(account.move_processed_to)
            for folder in folders:
                self.threads.append(FolderSync(settings, account, folder, self.audit, self.audit_lock, self.stop_event))

    def start(self) -> None:
        store = Store(self.settings.data_dir)
        try:
            imapstate.ensure(store)
            with store.transaction():  # forget folders no longer configured
                wanted = {(t.source, t.folder_name) for t in self.threads}
                for source, folder in store.db.execute("SELECT source, folder FROM imap_status").fetchall():
                    if (source, folder) not in wanted:
                        store.db.execute("DELETE FROM imap_status WHERE source = ? AND folder = ?", (source, folder))
        finally:
            store.close()
        for thread in self.threads:
            thread.start()
        if self.threads:
            log.info("IMAP : %d dossier(s) suivi(s)", len(self.threads))

    def stop(self, timeout: float = 15) -> None:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(timeout)
        self.audit.close()
