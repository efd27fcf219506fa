"""What the commands print for ``--json``: one JSON document on one line of standard output,
accents written as they are (French names, reasons)."""

from __future__ import annotations

import json
import sys
from typing import Any


def emit(data: Any) -> None:
    json.dump(data, sys.stdout, ensure_ascii=False)
    sys.stdout.write("\n")
