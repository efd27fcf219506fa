"""Find mail on disk and cut it into messages: .eml files, mbox files, Maildir folders, PDFs.

Discovery only reads directory entries and file heads; messages are cut from mbox files
lazily so a multi-gigabyte Thunderbird folder never sits in memory whole.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

#: File kinds the ingest understands.
EML, MBOX, MAILDIR, PDF = "eml", "mbox", "maildir", "pdf"

_SKIP_SUFFIXES = {
    ".msf", ".dat", ".json", ".sqlite", ".sqlite-wal", ".sqlite-shm", ".db", ".log", ".ini", ".js",
    ".part", ".crdownload", ".tmp", ".lock", ".html", ".txt", ".png", ".jpg", ".zip", ".xpi",
}
_MAILBOX_SUFFIXES = {"", ".mbox", ".mbx"}
_HEADER_START = re.compile(rb"^[!-9;-~]+[ \t]*:", re.M)
_FROM_LINE = re.compile(rb"^From [^\n]*\n", re.M)
_FROM_TIME = re.compile(rb"\d{1,2}:\d{2}")
_ESCAPED_FROM = re.compile(rb"^>(>*From )", re.M)


@dataclass(frozen=True)
class Found:
    """A file to read, with the stat values used to notice changes."""

    path: str
    kind: str
    size: int
    mtime_ns: int


def discover(paths: list[Path], known: Mapping[str, tuple[int, int]] | None = None) -> Iterator[Found]:
    """Every mail file under ``paths`` (files or folders, recursively), with absolute paths.

    ``known`` maps paths already read to their (size, mtime): a Maildir message file never changes
    once delivered (flags change its name, not its content), so a known one is not even stat'ed.
    """
    known = known or {}
    for path in paths:
        root = os.path.abspath(path)
        try:
            st = os.stat(root)
        except OSError:
            continue
        if os.path.isdir(root):
            yield from _walk(root, known)
        else:
            kind = classify_file(Path(root))
            if kind:
                yield Found(root, kind, st.st_size, st.st_mtime_ns)


def _is_maildir(folder: str) -> bool:
    return os.path.isdir(os.path.join(folder, "cur")) and os.path.isdir(os.path.join(folder, "new"))


def _walk(root: str, known: Mapping[str, tuple[int, int]]) -> Iterator[Found]:
    stack = [root]
    while stack:
        folder = stack.pop()
        maildir = _is_maildir(folder)
        for entry in _visible_entries(folder):
            try:
                if entry.is_dir(follow_symlinks=False):
                    if maildir and entry.name in ("cur", "new"):
                        yield from _maildir_files(entry.path, known)
                    elif not (maildir and entry.name == "tmp"):
                        stack.append(entry.path)
                    continue
                if not entry.is_file(follow_symlinks=False):
                    continue
                kind = classify_file(Path(entry.path))
                if kind:
                    st = entry.stat()
                    yield Found(entry.path, kind, st.st_size, st.st_mtime_ns)
            except OSError:
                continue


def _visible_entries(folder: str) -> list[os.DirEntry[str]]:
    """Entries of ``folder`` in name order, hidden ones left out; none if it cannot be read."""
    try:
        with os.scandir(folder) as it:
            return sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)
    except OSError:
        return []


def _maildir_files(folder: str, known: Mapping[str, tuple[int, int]]) -> Iterator[Found]:
    for entry in _visible_entries(folder):
        signature = known.get(entry.path)
        if signature is not None:
            yield Found(entry.path, MAILDIR, signature[0], signature[1])
            continue
        try:
            if entry.is_file(follow_symlinks=False):
                st = entry.stat()
                yield Found(entry.path, MAILDIR, st.st_size, st.st_mtime_ns)
        except OSError:
            continue


def classify_file(path: Path) -> str | None:
    """The kind of a file from its name, sniffing the head of extension-less files."""
    name = path.name
    if name.startswith(".") or name.endswith("~"):
        return None
    suffix = path.suffix.lower()
    if suffix == ".eml":
        return EML
    if suffix == ".pdf":
        return PDF
    if suffix in _SKIP_SUFFIXES:
        return None
    if suffix in _MAILBOX_SUFFIXES or not suffix.isascii() or len(suffix) > 6:
        return _sniff(path)
    return None


def _sniff(path: Path) -> str | None:
    try:
        with open(path, "rb") as fh:
            head = fh.read(1024)
    except OSError:
        return None
    if head.startswith(b"From "):
        return MBOX
    if _HEADER_START.match(head) and b"\n" in head:
        return EML
    return None


# --- mbox --------------------------------------------------------------------------------------

@dataclass
class MboxMessage:
    start: int  # offset of the From_ line
    end: int
    data: bytes  # the message without its From_ line, ``>From`` unescaped


def tail_fingerprint(path: str, offset: int) -> str | None:
    """A hash of the bytes just before ``offset``: tells whether a mailbox was only appended to."""
    if offset <= 0:
        return None
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, offset - 1024))
            chunk = fh.read(min(offset, 1024))
    except OSError:
        return None
    return hashlib.sha1(chunk).hexdigest()


def starts_message(path: str, offset: int) -> bool:
    """True when an mbox separator line starts at ``offset``."""
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            return fh.read(5) == b"From "
    except OSError:
        return False


def mbox_messages(path: str, offset: int = 0) -> Iterator[MboxMessage]:
    """Messages of an mbox file from ``offset`` (which must be the start of a From_ line).

    mboxo/mboxrd as Thunderbird writes them: ``From `` separator lines (at the start of the file,
    after a blank line, or carrying a time), one ``>`` removed from escaped ``>From`` lines.
    """
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size <= offset:
            return
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            for start, end in _spans(_message_starts(mm, offset, size), size):
                yield MboxMessage(start, end, _message_bytes(mm[start:end]))


def mbox_spans(path: str, offset: int = 0) -> Iterator[tuple[int, int]]:
    """(start, end) of each message of an mbox file from ``offset``, as :func:`mbox_messages` cuts
    them, without reading the messages: :func:`read_mbox_message` reads one (in a worker)."""
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size <= offset:
            return
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            starts = _message_starts(mm, offset, size)
    yield from _spans(starts, size)


def _message_starts(mm: mmap.mmap, offset: int, size: int) -> list[int]:
    """Where each message begins, from ``offset`` (always the first)."""
    starts = [m.start() for m in _separators(mm, offset, size)]
    if not starts or starts[0] != offset:
        starts.insert(0, offset)
    return starts


def _spans(starts: list[int], size: int) -> Iterator[tuple[int, int]]:
    for i, start in enumerate(starts):
        yield start, starts[i + 1] if i + 1 < len(starts) else size


def read_mbox_message(path: str, start: int, end: int) -> bytes:
    """The message at ``[start, end)`` of an mbox file: its From_ line removed, ``>From`` unescaped."""
    with open(path, "rb") as fh:
        fh.seek(start)
        return _message_bytes(fh.read(end - start))


def _message_bytes(chunk: bytes) -> bytes:
    nl = chunk.find(b"\n")
    body = chunk[nl + 1 :] if chunk.startswith(b"From ") and nl >= 0 else chunk
    if b">From " in body:
        body = _ESCAPED_FROM.sub(rb"\1", body)
    return body


def _separators(mm: mmap.mmap, offset: int, size: int) -> Iterator[re.Match[bytes]]:
    for m in _FROM_LINE.finditer(mm, offset, size):
        pos = m.start()
        if pos == offset or pos == 0:
            yield m
            continue
        before = mm[max(0, pos - 3) : pos]
        if before.endswith(b"\n\n") or before.endswith(b"\n\r\n") or _FROM_TIME.search(m.group(0)):
            yield m
