"""Schemathesis hooks: raw mail bodies for ``POST /api/v1/messages`` (``message/rfc822``).

Loaded by the schemathesis run in ``test_api_fuzz.py`` through ``SCHEMATHESIS_HOOKS``. The bodies
are real certificate messages, spoofed ones, ordinary mail, mutated (truncated, bytes flipped,
header storms) and arbitrary bytes, so the route's own input is fuzzed, not only its headers.
"""

from __future__ import annotations

import datetime as dt
import random

import mailgen
import schemathesis
from hypothesis import strategies as st


def _certificate(seed: int) -> bytes:
    rng = random.Random(seed)
    sampled = dt.datetime.now().replace(microsecond=0, second=0) - dt.timedelta(days=1)
    spec = mailgen.random_spec(rng, sampled_at=sampled, integrated_at=sampled + dt.timedelta(hours=3))
    return mailgen.make_message(spec, include_pdf=rng.random() < 0.3)


def _mutated(seed: int, cut: float, flips: list[int]) -> bytes:
    raw = bytearray(_certificate(seed))
    for position in flips:
        raw[position % len(raw)] ^= 0xFF
    return bytes(raw[: max(1, int(len(raw) * cut))])


def _spoofed(seed: int) -> bytes:
    return mailgen.spoof(mailgen.random_spec(random.Random(seed)), include_pdf=False)


def _other(seed: int) -> bytes:
    return mailgen.other_mail(random.Random(seed), seed)


def _header_storm(count: int) -> bytes:
    return b"".join(b"X-H%d: v\r\n" % i for i in range(count)) + b"Subject: x\r\n\r\nbody\r\n"


seeds = st.integers(min_value=0, max_value=10_000)
RAW_MAIL = st.one_of(
    seeds.map(_certificate),
    st.builds(_mutated, seeds, st.floats(0.05, 1.0), st.lists(st.integers(0, 100_000), max_size=8)),
    seeds.map(_spoofed),
    seeds.map(_other),
    st.integers(0, 3000).map(_header_storm),
    st.binary(min_size=1, max_size=4096).filter(lambda raw: raw.strip() != b""),
)

schemathesis.openapi.media_type("message/rfc822", RAW_MAIL)
