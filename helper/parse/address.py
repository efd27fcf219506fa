"""Read an address header (From, Sender, To…) the way RFC 5322 §3.4 defines it.

What happens, step by step:

1. The unfolded header value is cut into tokens by a single left-to-right scan: atoms, quoted
   strings (backslash escapes), domain literals, and the specials ``< > @ , ; : .``. Comments
   (nested, with escapes) and white space are skipped; each token remembers whether white space or
   a comment came just before it. No regular expression can backtrack here: each character is
   looked at a bounded number of times, so the time is linear in the length of the value.
2. A recursive-descent parser with one token of look-ahead reads the address list: mailboxes
   (``addr-spec`` or ``[display-name] <addr-spec>``), groups (``name: a, b;``), and the obsolete
   forms of RFC 5322 §4.4 (empty list elements, source routes, white space or comments inside an
   addr-spec), which are accepted but flagged ``obsolete``.
3. Display names are decoded (RFC 2047 encoded words) only after the structure is known, so an
   encoded word can never turn into an address, and text inside a quoted display name or a
   comment is never taken for one: ``"<a@b>" <c@d>`` and ``(<a@b>) c@d`` both name ``c@d``.

Anything that does not follow the grammar raises :class:`AddressError`, with a French reason.

Comparison: :func:`canonical` lower-cases the domain (DNS is case-insensitive) and, by decision
of this project, the local part too, ASCII letters only (RFC 5321 lets a server distinguish case
in the local part; no mail system in practice does, and the addresses compared here belong to
operators who do not). Non-ASCII characters are compared as they are, so no Unicode case mapping
(the Kelvin sign, dotted I…) can turn a foreign address into a trusted one. A quoted local part
whose content is a plain dot-atom is the same address as the unquoted one (RFC 5321 §4.1.2).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from helper.parse.mime import decode_rfc2047

__all__ = ["AddressError", "AddressList", "Group", "Mailbox", "canonical", "parse_address_list"]


class AddressError(ValueError):
    """An address header that does not follow RFC 5322; the message is French, for IT."""


@dataclass(frozen=True)
class Mailbox:
    display_name: str
    local: str  # semantic value (quotes and escapes removed)
    domain: str  # as written, domain literals with their brackets
    obsolete: bool = False

    @property
    def address(self) -> str:
        return canonical(self.local, self.domain)


@dataclass(frozen=True)
class Group:
    display_name: str
    mailboxes: tuple[Mailbox, ...]


@dataclass(frozen=True)
class AddressList:
    items: tuple[Mailbox | Group, ...]
    obsolete: bool  # an obsolete form was used anywhere (empty list elements, routes, CFWS in an addr-spec)

    @property
    def mailboxes(self) -> list[Mailbox]:
        out: list[Mailbox] = []
        for item in self.items:
            out.extend(item.mailboxes if isinstance(item, Group) else (item,))
        return out


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_DOT_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\x80-\U0010ffff-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~\x80-\U0010ffff-]+)*")


def ascii_lower(text: str) -> str:
    """Lower-case ASCII letters only (no Unicode case mapping)."""
    return text.translate(_ASCII_LOWER)


def canonical(local: str, domain: str) -> str:
    """The form two addresses are compared in (see the module docstring)."""
    if not _DOT_ATOM.fullmatch(local):
        local = '"' + local.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"{ascii_lower(local)}@{ascii_lower(domain)}"


# --- 1. tokens --------------------------------------------------------------------------------------

ATOM, QUOTED, LITERAL, SPECIAL = "atom", "quoted", "literal", "special"

_ATEXT_RUN = re.compile(r'[^\s()<>\[\]:;@\\,."\x00-\x1f\x7f]+')
_SPACE_RUN = re.compile(r"[ \t\r\n]+")
_QTEXT_RUN = re.compile(r'[^"\\\x00-\x08\x0a-\x1f\x7f]+')
_CTEXT_RUN = re.compile(r"[^()\\\x00-\x08\x0a-\x1f\x7f]+")
_DTEXT_RUN = re.compile(r"[^\[\]\\\x00-\x08\x0a-\x1f\x7f]+")
#: Control characters (C0, DEL, C1), line/paragraph separators and bidirectional overrides: never
#: in an address we accept, so that an address echoed in ``status`` cannot forge a line or disguise itself.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_SPECIALS = frozenset("<>@,;:.")


@dataclass(frozen=True, slots=True)
class Token:
    kind: str
    value: str
    spaced: bool  # white space or a comment came just before


def tokenize(value: str) -> list[Token]:
    """Cut an unfolded header value into tokens (step 1). Linear time."""
    if _CONTROL.search(value):
        raise AddressError("caractère de contrôle dans l'adresse")
    value = value.replace("\r", " ").replace("\n", " ")
    tokens: list[Token] = []
    i, n, spaced = 0, len(value), False
    while i < n:
        c = value[i]
        if c in " \t":
            i = _SPACE_RUN.match(value, i).end()  # type: ignore[union-attr]
            spaced = True
        elif c == "(":
            i = _skip_comment(value, i)
            spaced = True
        elif c == '"':
            text, i = _quoted(value, i, _QTEXT_RUN, '"', "chaîne entre guillemets non fermée")
            tokens.append(Token(QUOTED, text, spaced))
            spaced = False
        elif c == "[":
            text, i = _quoted(value, i, _DTEXT_RUN, "]", "domaine entre crochets non fermé")
            tokens.append(Token(LITERAL, f"[{text.strip()}]", spaced))
            spaced = False
        elif c in _SPECIALS:
            tokens.append(Token(SPECIAL, c, spaced))
            i += 1
            spaced = False
        elif c in ")]\\":
            raise AddressError(f"caractère « {c} » inattendu")
        else:
            m = _ATEXT_RUN.match(value, i)
            if m is None:  # white space other than space and tab (no-break space…)
                raise AddressError("caractère inattendu")
            tokens.append(Token(ATOM, m.group(), spaced))
            i = m.end()
            spaced = False
    return tokens


def _skip_comment(value: str, i: int) -> int:
    depth, i, n = 1, i + 1, len(value)
    while i < n:
        m = _CTEXT_RUN.match(value, i)
        if m:
            i = m.end()
            if i >= n:
                break
        c = value[i]
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return i + 1
        elif c == "\\":
            i += 1
            if i >= n:
                break
        i += 1
    raise AddressError("commentaire non fermé")


def _quoted(value: str, i: int, run: re.Pattern[str], close: str, error: str) -> tuple[str, int]:
    out: list[str] = []
    i, n = i + 1, len(value)
    while i < n:
        m = run.match(value, i)
        if m:
            out.append(m.group())
            i = m.end()
            if i >= n:
                break
        c = value[i]
        if c == close:
            return "".join(out), i + 1
        if c == "\\":
            if i + 1 >= n:
                break
            out.append(value[i + 1])
            i += 2
        else:  # "[" inside a domain literal, or a bare control character
            raise AddressError(error)
    raise AddressError(error)


# --- 2. grammar ----------------------------------------------------------------------------------

class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.pos = 0
        self.obsolete = False

    def peek(self) -> Token | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def at(self, special: str) -> bool:
        tok = self.peek()
        return tok is not None and tok.kind == SPECIAL and tok.value == special

    def expect(self, special: str, error: str) -> None:
        if not self.at(special):
            raise AddressError(error)
        self.pos += 1

    def address_list(self) -> AddressList:
        items: list[Mailbox | Group] = []
        while self.peek() is not None:
            if self.at(","):  # obs-addr-list: an empty element
                self.obsolete = True
                self.pos += 1
                continue
            items.append(self.address(allow_group=True))
            if self.peek() is None:
                break
            self.expect(",", "séparateur attendu entre deux adresses")
            if self.peek() is None:
                self.obsolete = True  # a trailing comma
        if not items:
            raise AddressError("aucune adresse")
        return AddressList(tuple(items), self.obsolete)

    def phrase(self) -> list[Token]:
        words: list[Token] = []
        while True:
            tok = self.peek()
            if tok is None or not (tok.kind in (ATOM, QUOTED) or (tok.kind == SPECIAL and tok.value == ".")):
                return words
            words.append(tok)
            self.pos += 1

    def address(self, allow_group: bool) -> Mailbox | Group:
        words = self.phrase()
        if self.at("<"):
            return self.angle_addr(_display_name(words))
        if self.at(":"):
            if not allow_group:
                raise AddressError("groupe imbriqué dans un groupe")
            return self.group(words)
        if self.at("@"):
            local, obsolete = _local_part(words)
            self.pos += 1
            domain, obs_domain = self.domain()
            return Mailbox("", local, domain, obsolete or obs_domain)
        if not words:
            raise AddressError("adresse attendue")
        raise AddressError("nom sans adresse (« @ » ou « < » attendu)")

    def angle_addr(self, display: str) -> Mailbox:
        self.pos += 1  # "<"
        obsolete = False
        if self.at("@") or self.at(","):  # obs-route: <@a,@b:local@domain>
            self.route()
            obsolete = True
        words = self.phrase()
        if not self.at("@"):
            raise AddressError("adresse entre chevrons sans « @ »")
        local, obs_local = _local_part(words)
        self.pos += 1
        domain, obs_domain = self.domain()
        self.expect(">", "« > » attendu après l'adresse")
        return Mailbox(display, local, domain, obsolete or obs_local or obs_domain)

    def route(self) -> None:
        seen = False
        while not self.at(":"):
            if self.at(","):
                self.pos += 1
            elif self.at("@"):
                self.pos += 1
                self.domain()
                seen = True
            else:
                raise AddressError("route d'adresse mal formée")
        if not seen:
            raise AddressError("route d'adresse mal formée")
        self.pos += 1

    def group(self, words: list[Token]) -> Group:
        if not words:
            raise AddressError("groupe sans nom")
        name = _display_name(words)
        self.pos += 1  # ":"
        members: list[Mailbox] = []
        while not self.at(";"):
            if self.peek() is None:
                raise AddressError("groupe non fermé (« ; » attendu)")
            if self.at(","):
                self.pos += 1
                continue
            member = self.address(allow_group=False)
            assert isinstance(member, Mailbox)
            members.append(member)
            if not (self.at(",") or self.at(";")):
                raise AddressError("séparateur attendu dans le groupe")
        self.pos += 1
        return Group(name, tuple(members))

    def domain(self) -> tuple[str, bool]:
        tok = self.peek()
        if tok is None:
            raise AddressError("domaine absent après « @ »")
        if tok.kind == LITERAL:
            self.pos += 1
            return tok.value, False
        if tok.kind != ATOM:
            raise AddressError("domaine attendu après « @ »")
        parts, obsolete = [tok.value], False
        self.pos += 1
        while self.at("."):
            dot = self.tokens[self.pos]
            self.pos += 1
            nxt = self.peek()
            if nxt is None or nxt.kind != ATOM:
                raise AddressError("domaine mal formé")
            obsolete = obsolete or dot.spaced or nxt.spaced
            parts.append(nxt.value)
            self.pos += 1
        return ".".join(parts), obsolete


def _local_part(words: list[Token]) -> tuple[str, bool]:
    """word *("." word); white space between the pieces, or a quoted piece among others, is obsolete."""
    if not words or words[0].kind == SPECIAL:
        raise AddressError("partie locale de l'adresse absente ou mal formée")
    pieces: list[str] = []
    obsolete = False
    for k, tok in enumerate(words):
        if (k % 2 == 1) != (tok.kind == SPECIAL):
            raise AddressError("partie locale de l'adresse mal formée")
        if k > 0 and tok.spaced:
            obsolete = True
        pieces.append(tok.value)
    if words[-1].kind == SPECIAL:
        raise AddressError("partie locale de l'adresse mal formée")
    if len(words) > 1 and any(t.kind == QUOTED for t in words):
        obsolete = True
    return "".join(pieces), obsolete


#: Display names longer than this are shown as written (RFC 2047 decoding is for display only).
MAX_DECODED_NAME = 2000


def _display_name(words: list[Token]) -> str:
    if not words:
        return ""
    if words[0].kind == SPECIAL:
        raise AddressError("nom affiché mal formé")
    out: list[str] = []
    for k, tok in enumerate(words):
        if k and tok.spaced:
            out.append(" ")
        out.append(tok.value)
    text = "".join(out)
    return decode_rfc2047(text) if len(text) <= MAX_DECODED_NAME else text


#: The everyday form, a bare dot-atom ``local@domain``: read without the general parser (same result).
_PLAIN_ADDR_SPEC = re.compile(
    r"([A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*)@([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)"
)


def parse_address_list(value: str) -> AddressList:
    """Parse an unfolded address header value (From, To, Sender, Reply-To…). Raises AddressError."""
    plain = _PLAIN_ADDR_SPEC.fullmatch(value.strip(" \t"))
    if plain:
        return AddressList((Mailbox("", plain.group(1), plain.group(2)),), False)
    return _Parser(tokenize(value)).address_list()

