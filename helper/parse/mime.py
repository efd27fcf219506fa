"""A small, fast and tolerant MIME reader with hard limits.

The standard ``email`` package builds a full object tree and decodes everything; for thousands
of certificate messages we only need the headers first, then one text part and one PDF. This
module splits a message into parts lazily, decodes only what is asked, and enforces the limits
Dovecot uses (message size, nesting depth, part count) so a hostile message cannot exhaust us.
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass, field
from email.utils import parseaddr
from functools import cached_property
from urllib.parse import unquote_to_bytes

MAX_MESSAGE_BYTES = 50 * 1024 * 1024
MAX_DEPTH = 100
MAX_PARTS = 10_000
#: Header limits (as Dovecot bounds a header): physical lines, and bytes, of one header block.
MAX_HEADER_LINES = 10_000
MAX_HEADER_BYTES = 1024 * 1024


class MimeError(Exception):
    """A message that cannot be read. ``reason`` is a stable code for the quarantine."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


_HEADER_END = re.compile(rb"\r?\n\r?\n")
_EMPTY_HEADER = re.compile(rb"\r?\n")  # an entity that starts with its blank line has no header
_HEADER_LINE = re.compile(rb"^([!-9;-~]+)[ \t]*:[ \t]*(.*)$")


def _decode_header_bytes(value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("cp1252", errors="replace")


def split_headers(raw: bytes, begin: int = 0, end: int | None = None) -> tuple[dict[str, str], int]:
    """Parse the header block. Returns (lower-case name → unfolded raw value, body offset).

    ``begin``/``end`` read the entity at ``raw[begin:end]`` without copying it; the body offset
    returned is then an offset in ``raw``.

    The first occurrence of a header wins. A leading mbox ``From `` line (as Thunderbird may
    leave it) is skipped. A header block over :data:`MAX_HEADER_LINES` lines or
    :data:`MAX_HEADER_BYTES` bytes raises :class:`MimeError` ``too_many_headers``.
    """
    end = len(raw) if end is None else end
    start = begin
    if raw.startswith(b"From ", begin, end):
        nl = raw.find(b"\n", begin, end)
        start = end if nl < 0 else nl + 1
    # The end of the header is only looked for within the limit (plus its own blank line).
    m = _EMPTY_HEADER.match(raw, start, end) or _HEADER_END.search(raw, start, min(end, start + MAX_HEADER_BYTES + 4))
    if m is None:
        # Headers only (or a message cut inside its headers).
        block, body_at = raw[start:end], end
    else:
        block, body_at = raw[start : m.start()], m.end()
    if len(block) > MAX_HEADER_BYTES:
        raise MimeError("too_many_headers", f"en-tête de plus de {MAX_HEADER_BYTES // 1024} Ko")
    if block.count(b"\n") >= MAX_HEADER_LINES:
        raise MimeError("too_many_headers", f"en-tête de plus de {MAX_HEADER_LINES} lignes")
    headers: dict[str, str] = {}
    name: bytes | None = None
    value: list[bytes] = []
    for line in block.split(b"\n"):
        line = line.rstrip(b"\r")
        if line[:1] in (b" ", b"\t"):
            if name is not None:
                value.append(line.strip())
            continue
        if name is not None:
            key = name.decode("ascii", "replace").lower()
            if key not in headers:
                headers[key] = _decode_header_bytes(b" ".join(value))
        hm = _HEADER_LINE.match(line)
        if hm:
            name, value = hm.group(1), [hm.group(2).strip()]
        else:
            name, value = None, []
    if name is not None:
        key = name.decode("ascii", "replace").lower()
        if key not in headers:
            headers[key] = _decode_header_bytes(b" ".join(value))
    return headers, body_at


# --- RFC 2047 encoded words -----------------------------------------------------------------

_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")
_BETWEEN_WORDS = re.compile(r"(=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=)\s+(?==\?)")


def _charset(name: str) -> str:
    name = name.split("*", 1)[0].strip().strip('"').lower()
    # Mail declared as Latin-1 or ASCII is, in practice, often Windows-1252 (curly quotes, œ, €).
    if name in {"iso-8859-1", "iso8859-1", "latin1", "latin-1", "us-ascii", "ascii", "iso_8859-1", ""}:
        return "cp1252"
    return name


def decode_bytes(data: bytes, charset: str) -> str:
    """Decode text with its declared charset, falling back to UTF-8 then Windows-1252."""
    for cs in (_charset(charset), "utf-8", "cp1252"):
        try:
            return data.decode(cs)
        except (LookupError, UnicodeDecodeError):
            continue
    return data.decode("cp1252", errors="replace")


def _decode_word(m: re.Match[str]) -> str:
    charset, enc, text = m.group(1), m.group(2).upper(), m.group(3)
    try:
        if enc == "B":
            data = binascii.a2b_base64(text + "=" * (-len(text) % 4))
        else:
            data = binascii.a2b_qp(text.replace("_", " ").encode("ascii", "replace"))
    except (binascii.Error, ValueError):
        return m.group(0)
    return decode_bytes(data, charset)


def decode_rfc2047(value: str) -> str:
    """Decode encoded words; whitespace between adjacent encoded words is dropped (RFC 2047 §6.2).

    Consecutive words of the same charset are joined before decoding, so a multi-byte character
    split across two words survives.
    """
    if "=?" not in value:
        return value
    value = _BETWEEN_WORDS.sub(r"\1", value)
    return _ENCODED_WORD.sub(_decode_word, _merge_split_words(value))


_SAME_B_WORDS = re.compile(r"(=\?([^?\s]+)\?[bB]\?)([^?\s]*)\?==\?\2\?[bB]\?([^?\s]*)\?=")


def _merge_split_words(value: str) -> str:
    # Decoding base64 words one by one breaks UTF-8 characters split across words; merge the
    # raw bytes of adjacent same-charset B words first.
    def merge(m: re.Match[str]) -> str:
        try:
            a = binascii.a2b_base64(m.group(3) + "=" * (-len(m.group(3)) % 4))
            b = binascii.a2b_base64(m.group(4) + "=" * (-len(m.group(4)) % 4))
        except (binascii.Error, ValueError):
            return m.group(0)
        return f"{m.group(1)}{binascii.b2a_base64(a + b, newline=False).decode()}?="

    previous = None
    while previous != value:
        previous = value
        value = _SAME_B_WORDS.sub(merge, value)
    return value


# --- parameters (RFC 2045 / RFC 2231) ------------------------------------------------------

_PARAM = re.compile(r';\s*([^=\s;]+)\s*=\s*("(?:[^"\\]|\\.)*"?|[^;]*)')


def parse_content_header(value: str) -> tuple[str, dict[str, str]]:
    """``text/plain; charset="utf-8"`` → (``text/plain``, {``charset``: ``utf-8``}).

    RFC 2231 extended and continued parameters (``filename*0*=utf-8''…``) are reassembled and
    decoded; RFC 2047 words in quoted values (an old Outlook/Thunderbird habit) are decoded too.
    """
    main, _, rest = value.partition(";")
    params: dict[str, str] = {}
    pieces: dict[str, dict[int, tuple[str, bool]]] = {}
    for m in _PARAM.finditer(";" + rest):
        key, raw = m.group(1).lower(), m.group(2).strip()
        if raw.startswith('"'):
            raw = raw[1:-1] if raw.endswith('"') and len(raw) > 1 else raw[1:]
            if "\\" in raw:
                raw = re.sub(r"\\(.)", r"\1", raw)
        if "*" in key:
            base, _, index = key.partition("*")
            extended = key.endswith("*")
            index = index.rstrip("*")
            n = int(index) if index.isdigit() else 0
            pieces.setdefault(base, {})[n] = (raw, extended)
        elif key not in params:
            params[key] = raw
    for base, parts in pieces.items():
        charset = "utf-8"
        chunks: list[bytes] = []
        for i in sorted(parts):
            raw, extended = parts[i]
            if extended:
                if i == 0 and raw.count("'") >= 2:
                    charset, _lang, raw = raw.split("'", 2)
                chunks.append(_percent_decode(raw))
            else:
                chunks.append(raw.encode("utf-8", "surrogateescape"))
        params[base] = decode_bytes(b"".join(chunks), charset or "utf-8")
    for key in ("name", "filename"):
        if key in params:
            params[key] = decode_rfc2047(params[key])
    return main.strip().lower(), params


def _percent_decode(text: str) -> bytes:
    return unquote_to_bytes(text)


# Linear: the local part cannot hold ``@`` (so a run of ``a@a@a@…`` is not retried at every ``@``),
# and the optional comment owns the whitespace after it (no two adjacent ``\s*`` over the same spaces).
_ANGLE_ADDRESS = re.compile(r"<\s*+([^<>\s@]+@[^<>\s]+?)\s*+>")
_BARE_ADDRESS = re.compile(r"^\s*+([^<>\s\"(),;:@]+@[^<>\s\"(),;:]++)\s*+(?:\(.*\)\s*+)?$")


def address_of(value: str) -> str:
    """The bare, lower-case e-mail address of a From/To header value."""
    m = _ANGLE_ADDRESS.search(value) or _BARE_ADDRESS.match(value)
    if m:
        return m.group(1).lower()
    return parseaddr(decode_rfc2047(value))[1].strip().lower()


# --- parts ----------------------------------------------------------------------------------------

@dataclass
class Part:
    """One MIME entity. ``body`` is still transfer-encoded; call :meth:`payload`."""

    headers: dict[str, str]
    body: bytes
    content_type: str = "text/plain"
    params: dict[str, str] = field(default_factory=dict)
    children: list[Part] = field(default_factory=list)
    truncated: bool = False

    @cached_property
    def filename(self) -> str | None:
        disp = self.headers.get("content-disposition")
        if disp:
            _, dparams = parse_content_header(disp)
            if dparams.get("filename"):
                return dparams["filename"]
        return self.params.get("name")

    @property
    def is_attachment(self) -> bool:
        return self.headers.get("content-disposition", "").lower().startswith("attachment")

    def payload(self) -> bytes:
        """The decoded body bytes (base64, quoted-printable, 7bit/8bit/binary)."""
        cte = self.headers.get("content-transfer-encoding", "").strip().lower()
        if cte == "base64":
            data = self.body
            try:
                return binascii.a2b_base64(data)
            except binascii.Error:
                # Tolerate missing padding or stray characters; a truncated payload is
                # detected by the caller (closing boundary or PDF trailer missing).
                cleaned = re.sub(rb"[^A-Za-z0-9+/]", b"", data)
                cleaned = cleaned[: len(cleaned) - len(cleaned) % 4]
                return binascii.a2b_base64(cleaned)
        if cte == "quoted-printable":
            return binascii.a2b_qp(self.body)
        return self.body

    def text(self) -> str:
        return decode_bytes(self.payload(), self.params.get("charset", "utf-8"))

    def walk(self) -> list[Part]:
        out = [self]
        for child in self.children:
            out.extend(child.walk())
        return out


class _Counter:
    def __init__(self) -> None:
        self.parts = 0


def parse(raw: bytes, *, headers: dict[str, str] | None = None, body_at: int | None = None) -> Part:
    """Parse a whole message into parts, enforcing size, depth and part-count limits."""
    if len(raw) > MAX_MESSAGE_BYTES:
        raise MimeError("too_large", f"{len(raw)} octets > {MAX_MESSAGE_BYTES}")
    if headers is None or body_at is None:
        headers, body_at = split_headers(raw)
    root = _entity(raw, headers, body_at, len(raw), 0, _Counter())
    if _HEADER_END.search(raw) is None:
        root.truncated = True  # cut inside its headers: no body at all
    return root


def _entity(raw: bytes, headers: dict[str, str], start: int, end: int, depth: int, counter: _Counter) -> Part:
    if depth > MAX_DEPTH:
        raise MimeError("too_deep", f"plus de {MAX_DEPTH} niveaux MIME imbriqués")
    counter.parts += 1
    if counter.parts > MAX_PARTS:
        raise MimeError("too_many_parts", f"plus de {MAX_PARTS} parties MIME")
    ctype, params = parse_content_header(headers.get("content-type", "text/plain"))
    if "/" not in ctype:
        ctype = "text/plain"
    part = Part(headers=headers, body=raw[start:end], content_type=ctype, params=params)
    if ctype.startswith("multipart/") and params.get("boundary"):
        _split_multipart(raw, part, params["boundary"], start, end, depth, counter)
    elif ctype == "message/rfc822":
        cte = headers.get("content-transfer-encoding", "").strip().lower()
        if cte in ("base64", "quoted-printable"):
            inner = part.payload()
            ih, ib = split_headers(inner)
            child = _entity(inner, ih, ib, len(inner), depth + 1, counter)
        else:
            ih, ib = split_headers(raw, start, end)
            child = _entity(raw, ih, ib, end, depth + 1, counter)
        part.children.append(child)
        part.truncated = child.truncated
    return part


def _split_multipart(
    raw: bytes, part: Part, boundary: str, start: int, end: int, depth: int, counter: _Counter
) -> None:
    delim = b"--" + boundary.encode("utf-8", "replace")
    positions: list[tuple[int, int, bool]] = []  # (line start, body start, closing)
    pos = start
    while True:
        at = raw.find(delim, pos, end)
        if at < 0:
            break
        pos = at + len(delim)
        if at != start and raw[at - 1] != 0x0A:  # delimiters start a line
            continue
        closing = raw.startswith(b"--", pos)
        after = pos + 2 if closing else pos
        nl = raw.find(b"\n", after, end)
        line_end = end if nl < 0 else nl + 1
        if raw[after:line_end].strip():  # a longer boundary sharing our prefix
            continue
        line_start = at - 1 if at > start else at
        if line_start > start and raw[line_start - 1] == 0x0D:
            line_start -= 1
        positions.append((line_start, line_end, closing))
        pos = line_end
        if closing:
            break
    if not positions or not positions[-1][2]:
        part.truncated = True
    if not positions:
        return
    for (_, body_start, closing), nxt in zip(positions, positions[1:] + [(end, end, True)], strict=True):
        if closing:
            break
        body_end = nxt[0]
        h, b = split_headers(raw, body_start, body_end)
        child = _entity(raw, h, b, body_end, depth + 1, counter)
        part.children.append(child)
        if child.truncated:
            part.truncated = True
