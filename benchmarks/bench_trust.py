#!/usr/bin/env python3
"""Address reader and trust rules: time on pathological From values, and messages parsed per second.

    python benchmarks/bench_trust.py                 # 10 KB, 100 KB, 1 MB storms; 2,000 messages
    python benchmarks/bench_trust.py --messages 500

Prints, for each storm (parenthesis, quote, bracket, dot, comma storms…), the CPU time of
``parse_address_list`` at each size and the 1 MB / 100 KB ratio (≈ 10 when linear); then the
single-core rate of ``parse_message`` over generated certificates and other mail. In a message,
a From field over ``MAX_FROM_LENGTH`` characters is refused before it is parsed at all.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import mailgen  # noqa: E402

from helper.parse.address import AddressError, parse_address_list  # noqa: E402
from helper.parse.message import ParseConfig, parse_message  # noqa: E402
from helper.parse.trust import MAX_FROM_LENGTH  # noqa: E402


def storms(n: int) -> dict[str, str]:
    half = n // 2
    return {
        "open_parens": "(" * n,
        "nested_comment": "(" * half + ")" * half + " a@b.example",
        "quote_storm": '"' + '\\"' * half,
        "empty_quotes": '""' * half + " <a@b.example>",
        "angles": "<" * n,
        "dots": "a." * half + "@b",
        "mailboxes": "a@b.example, " * (n // 13),
        "commas": "," * n + "a@b.example",
    }


def cpu(value: str) -> float:
    started = time.process_time()
    try:
        parse_address_list(value)
    except AddressError:
        pass
    return time.process_time() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    args = parser.parse_args()

    sizes = (10_000, 100_000, 1_000_000)
    print(f"{'storm':<16}" + "".join(f"{s // 1000:>9} KB" for s in sizes) + "   1 MB/100 KB")
    for kind in storms(10):
        times = [min(cpu(storms(n)[kind]) for _ in range(2 if n < 1_000_000 else 1)) for n in sizes]
        ratio = times[2] / times[1] if times[1] else float("inf")
        print(f"{kind:<16}" + "".join(f"{t:>10.3f}s" for t in times) + f"   {ratio:8.1f}")

    rng = random.Random(5)
    half = args.messages // 2
    msgs = [m for _, m in mailgen.corpus(rng, half)] + [mailgen.other_mail(rng, i) for i in range(half)]
    config = ParseConfig()
    best = float("inf")
    for _ in range(3):
        started = time.process_time()
        for raw in msgs:
            parse_message(raw, config)
        best = min(best, time.process_time() - started)
    print(f"parse_message: {len(msgs) / best:,.0f} messages/s on one core ({half} certificates, {half} other mail)")
    huge = mailgen.make_message(mailgen.random_spec(rng)).replace(
        b"\r\nFrom: ", b"\r\nFrom: " + b"(" * 1_000_000, 1
    )
    started = time.process_time()
    [outcome] = parse_message(huge, config)
    print(f"message with a 1 MB From field: {time.process_time() - started:.3f} s → {outcome.reason} "
          f"(From over {MAX_FROM_LENGTH} characters is not parsed)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
