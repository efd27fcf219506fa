"""Property tests (hypothesis) for the RFC 5322 address reader and the trust rule built on it.

- any text: the reader raises nothing but AddressError, the strict sender reading nothing at all;
- well-formed From fields generated with random display names, quoting, escapes and nested comments
  around a random address are read as exactly that address;
- a message is a certificate only when a strict reading of its From is exactly one trusted address
  (oracle: the generator, and Python's own ``email`` header parser when it reports no defect);
- pathological 1 MB values (parenthesis, quote and bracket storms) are read in linear time.

Per-example time is bounded with hypothesis ``deadline``.
"""

from __future__ import annotations

import datetime as dt
import random
import re
import time
from dataclasses import dataclass
from email.policy import default as default_policy

import mailgen
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from helper.parse.address import AddressError, canonical, parse_address_list
from helper.parse.message import ParseConfig, parse_message
from helper.parse.trust import MAX_FROM_LENGTH, TrustPolicy, strict_sender

TRUSTED = mailgen.TRUSTED_SENDER
POLICY = TrustPolicy()
FAST = settings(deadline=dt.timedelta(milliseconds=500), max_examples=150,
                suppress_health_check=[HealthCheck.too_slow])

# --- building blocks of RFC 5322 -------------------------------------------------------------------

ATEXT = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-/=?^_`{|}~"
SPECIALS = '()<>[]:;@\\,."'
atom = st.text(alphabet=ATEXT, min_size=1, max_size=8)
dot_atom = st.lists(atom, min_size=1, max_size=3).map(".".join)
label = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-", min_size=1, max_size=8)
domain = st.lists(label, min_size=1, max_size=4).map(".".join)
# Printable ASCII and a few accented letters, specials and would-be addresses included.


def pieces(choices: list[str], max_size: int) -> st.SearchStrategy[str]:
    """Strings made of the given pieces (single characters or whole would-be addresses)."""
    return st.lists(st.sampled_from(choices), max_size=max_size).map("".join)


free_text = pieces(list(ATEXT + SPECIALS + " \t") + ["é", "ç", "<" + TRUSTED + ">", TRUSTED], 12)


def quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def escape_comment(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


comment = st.recursive(
    free_text.map(lambda t: "(" + escape_comment(t) + ")"),
    lambda inner: st.tuples(free_text, inner, free_text).map(
        lambda t: "(" + escape_comment(t[0]) + t[1] + escape_comment(t[2]) + ")"
    ),
    max_leaves=4,
)
space = st.sampled_from(["", " ", "  ", "\t", " \r\n "])
cfws = st.lists(st.one_of(space, comment), max_size=3).map(lambda parts: " ".join(parts))
word = st.one_of(atom, free_text.map(quote))
encoded_word = free_text.map(lambda t: mailgen.encode_words(t or "x", "utf-8", "q"))
display_name = st.lists(st.one_of(word, encoded_word), min_size=1, max_size=4).map(" ".join)


@dataclass(frozen=True)
class Addr:
    written: str  # as in the header
    expected: str  # canonical form the reader must give


local_part = st.one_of(
    dot_atom.map(lambda a: (a, a)),
    free_text.map(lambda t: (quote(t), t)),
)


@st.composite
def addresses(draw: st.DrawFn, fixed: str | None = None) -> Addr:
    if fixed is not None:
        local, _, dom = fixed.partition("@")
        written_local, value_local = local, local
    else:
        (written_local, value_local), dom = draw(local_part), draw(domain)
    # CFWS may surround the local part and the domain (RFC 5322 §3.4.1, dot-atom = [CFWS] … [CFWS]).
    written = f"{written_local}{draw(cfws)}@{draw(cfws)}{dom}"
    return Addr(written, canonical(value_local, dom))


@st.composite
def mailboxes(draw: st.DrawFn, fixed: str | None = None) -> tuple[str, str]:
    """(written mailbox, expected canonical address)."""
    addr = draw(addresses(fixed))
    if draw(st.booleans()):
        written = f"{draw(cfws)} {addr.written} {draw(cfws)}"
    else:
        name = draw(st.one_of(st.just(""), display_name))
        written = f"{draw(cfws)}{name}{draw(cfws)}<{draw(cfws)}{addr.written}{draw(cfws)}>{draw(cfws)}"
    return written, addr.expected


# --- 1. any text ----------------------------------------------------------------------------------

@settings(FAST, max_examples=500)
@given(st.one_of(st.text(max_size=300), pieces(list(SPECIALS + " a@b=?") + [TRUSTED], 300)))
def test_any_text_never_raises(value: str) -> None:
    try:
        parsed = parse_address_list(value)
    except AddressError:
        pass
    else:
        assert parsed.items
    sender, why = strict_sender([value])
    assert (sender is None) == bool(why)
    # what status may echo never holds a line break, a control or a bidirectional override
    assert sender is None or not re.search("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]", sender)


# --- 2. well-formed fields name exactly their address ---------------------------------------------------

@FAST
@given(mailboxes())
def test_well_formed_from_is_read_as_its_address(box: tuple[str, str]) -> None:
    written, expected = box
    parsed = parse_address_list(written)
    assert [m.address for m in parsed.mailboxes] == [expected]
    assert strict_sender([written]) == (expected, "")


@FAST
@given(mailboxes(TRUSTED))
def test_any_well_formed_spelling_of_the_trusted_address_is_trusted(box: tuple[str, str]) -> None:
    written, expected = box
    assert expected == TRUSTED
    assert strict_sender([written])[0] == TRUSTED


@FAST
@given(st.lists(mailboxes(), min_size=2, max_size=4))
def test_several_mailboxes_are_each_read_and_never_one_sender(boxes: list[tuple[str, str]]) -> None:
    value = ",".join(w for w, _ in boxes)
    assert [m.address for m in parse_address_list(value).mailboxes] == [e for _, e in boxes]
    assert strict_sender([value])[0] is None


# --- 3. trusted only for exactly one trusted mailbox ----------------------------------------------------

@st.composite
def from_fields(draw: st.DrawFn) -> tuple[str, bool]:
    """A From value built from 1-3 mailboxes (trusted or not), maybe inside a group, maybe with an
    obsolete form; and whether a strict reading finds exactly one trusted mailbox."""
    boxes = draw(st.lists(st.one_of(mailboxes(TRUSTED), mailboxes(), mailboxes("attacker@evil.example")),
                          min_size=1, max_size=3))
    value = ", ".join(w for w, _ in boxes)
    shape = draw(st.sampled_from(["plain", "plain", "plain", "group", "empty_element", "route"]))
    if shape == "group":
        value = f"{draw(display_name)}: {value};"
    elif shape == "empty_element":
        value = f", {value}"
    elif shape == "route":
        value = f"<@relay.example:{boxes[0][0].strip().strip('<>')}>"
        assume("<" not in boxes[0][0])
    trusted = shape == "plain" and len(boxes) == 1 and boxes[0][1] == TRUSTED
    return value, trusted


def _python_reading(value: str) -> list[str] | None:
    """Addresses Python's email package reads in the value, or None when it reports a defect (other
    than about white space around an encoded word in the display name, which only affects display)
    or a group."""
    header = default_policy.header_factory("From", re.sub(r"\r?\n(?=[ \t])", "", value))  # unfolded
    defects = [d for d in header.defects if "encoded-word" not in str(d)]
    if defects or any(g.display_name is not None for g in header.groups):
        return None
    return [a.addr_spec.lower() for a in header.addresses]


@FAST
@given(from_fields())
def test_trusted_exactly_when_one_trusted_mailbox(field: tuple[str, bool]) -> None:
    value, trusted = field
    sender, _ = strict_sender([value])
    assert (sender == TRUSTED) is trusted


@FAST
@given(st.one_of(from_fields().map(lambda f: f[0]),
                 pieces(list(SPECIALS + ' "ab') + [TRUSTED, "(" + TRUSTED + ")"], 80)))
def test_trusted_sender_agrees_with_python_email_parser(value: str) -> None:
    """Independent oracle: whenever we trust, Python's strict-ish reader sees that one address, without defect."""
    sender, _ = strict_sender([value])
    if sender == TRUSTED:
        assert _python_reading(value) == [TRUSTED]


GENUINE = mailgen.make_message(mailgen.random_spec(random.Random(800)))
MARKER = f"\r\nFrom: {TRUSTED}\r\n".encode()
assert GENUINE.count(MARKER) == 1


def with_from(value: str, *, second: str | None = None) -> bytes:
    fields = f"\r\nFrom: {value}\r\n" + (f"From: {second}\r\n" if second is not None else "")
    return GENUINE.replace(MARKER, fields.replace("\r\n ", " ").encode())


@settings(deadline=dt.timedelta(seconds=2), max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(from_fields(), st.sampled_from(["", "Sender", "Reply-To"]))
def test_message_is_a_certificate_only_with_one_trusted_from(field: tuple[str, bool], extra: str) -> None:
    value, trusted = field
    raw = with_from(value)
    if extra:  # Sender/Reply-To naming SI-DEP changes nothing
        raw = raw.replace(b"\r\nTo: ", f"\r\n{extra}: {TRUSTED}\r\nTo: ".encode(), 1)
    [outcome] = parse_message(raw, ParseConfig(trust=POLICY))
    if trusted:
        assert outcome.status == "certificate"
    else:
        assert (outcome.status, outcome.reason) == ("quarantined", "untrusted_sender")


def test_two_from_fields_are_never_trusted() -> None:
    [outcome] = parse_message(with_from(TRUSTED, second=TRUSTED), ParseConfig(trust=POLICY))
    assert (outcome.status, outcome.reason) == ("quarantined", "untrusted_sender")
    [outcome] = parse_message(with_from(TRUSTED), ParseConfig(trust=POLICY))
    assert outcome.status == "certificate"


# --- 4. linear time on pathological values -------------------------------------------------------------

def _storms(n: int) -> dict[str, str]:
    half = n // 2
    return {
        "open_parens": "(" * n,
        "nested_comment": "(" * half + ")" * half + " a@b.example",
        "escaped_parens": "(" + "\\(" * half + ")",
        "quote_storm": '"' + '\\"' * half,
        "empty_quotes": '""' * half + " <a@b.example>",
        "quoted_words": '"a" ' * (n // 4) + "<a@b.example>",
        "angles": "<" * n,
        "dots": "a." * half + "@b",
        "mailboxes": "a@b.example, " * (n // 13),
        "brackets": "a@[" + "\\[" * half,
        "commas": "," * n + "a@b.example",
        "encoded_words": "=?utf-8?q?x?= " * (n // 14) + "<a@b.example>",
    }


def _cpu(value: str) -> float:
    started = time.process_time()
    try:
        parse_address_list(value)
    except AddressError:
        pass
    return time.process_time() - started


@pytest.mark.parametrize("kind", list(_storms(10)))
def test_one_megabyte_of_pathological_address_is_read_in_linear_time(kind: str) -> None:
    small = _storms(100_000)[kind]
    big = _storms(1_000_000)[kind]
    t_small = min(_cpu(small) for _ in range(2))
    t_big = _cpu(big)
    assert t_big < 10.0, f"{kind}: {t_big:.2f} s for 1 MB"
    # Ten times the input, at most ~25 times the time (linear, with room for noise and memory effects).
    assert t_big < max(25 * t_small, 0.5), f"{kind}: 100 KB {t_small:.3f} s, 1 MB {t_big:.3f} s"


def test_a_huge_from_field_does_not_slow_a_message_down() -> None:
    raw = with_from("(" * 900_000 + TRUSTED)
    started = time.process_time()
    [outcome] = parse_message(raw, ParseConfig(trust=POLICY))
    assert time.process_time() - started < 5.0
    assert (outcome.status, outcome.reason) == ("quarantined", "untrusted_sender")
    assert "trop long" in outcome.detail and len(raw) > MAX_FROM_LENGTH
