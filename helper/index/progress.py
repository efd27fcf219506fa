"""Progress of an ingest on stderr: a bar on a terminal, plain log lines otherwise.

1. On a terminal, the bar is redrawn at most five times a second (percentage of bytes read,
   messages read, messages per second).
2. Elsewhere (a log file, a pipe, a service journal) nothing is redrawn: one full line each time
   the run crosses another 10 % of the bytes to read, or every ``LOG_EVERY_SECONDS`` on a long
   stretch, with real figures (messages, megabytes read out of the total, rate, elapsed time).
3. ``finish`` ends the bar, or writes one summary line (messages, megabytes, seconds).
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

LOG_EVERY_SECONDS = 30.0
MB = 1024 * 1024


def _mb(nbytes: int) -> str:
    return f"{nbytes / MB:,.1f}".replace(",", " ").replace(".", ",")


class Progress:
    def __init__(self, total_bytes: int, enabled: bool = True, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.total = max(total_bytes, 1)
        self.done = 0
        self.count = 0
        self.enabled = enabled
        self.tty = self.stream.isatty()
        self.started = time.monotonic()
        self.last = self.started
        self.step = 0  # tenths of the total already written as a line

    def advance(self, nbytes: int) -> None:
        self.done += nbytes
        self.count += 1
        if not self.enabled:
            return
        now = time.monotonic()
        if self.tty:
            if now - self.last >= 0.2:
                self.last = now
                self._bar(now)
            return
        step = min(10, int(10 * self.done / self.total))
        if step > self.step and step < 10 or now - self.last >= LOG_EVERY_SECONDS:
            self.step = max(self.step, step)
            self.last = now
            self._line(now)

    def _bar(self, now: float) -> None:
        pct = min(100.0, 100.0 * self.done / self.total)
        rate = self.count / max(now - self.started, 1e-6)
        filled = int(pct / 100 * 30)
        bar = "#" * filled + "-" * (30 - filled)
        self.stream.write(f"\rIndexation [{bar}] {pct:5.1f} %  {self.count} messages  {rate:,.0f}/s ")
        self.stream.flush()

    def _line(self, now: float) -> None:
        pct = min(100, int(100 * self.done / self.total))
        elapsed = now - self.started
        rate = self.count / max(elapsed, 1e-6)
        self.stream.write(
            f"Indexation : {pct} % — {self.count} message(s) lu(s), {_mb(self.done)} Mo sur {_mb(self.total)} Mo, "
            f"{rate:.0f} messages/s, {elapsed:.0f} s écoulée(s)\n"
        )
        self.stream.flush()

    def finish(self) -> None:
        if not self.enabled or not self.count:
            return
        if self.tty:
            self._bar(time.monotonic())
            self.stream.write("\n")
        else:
            elapsed = time.monotonic() - self.started
            self.stream.write(
                f"Indexation terminée : {self.count} message(s) lu(s), {_mb(self.done)} Mo, "
                f"en {elapsed:.1f} s\n".replace(".", ",")
            )
        self.stream.flush()
