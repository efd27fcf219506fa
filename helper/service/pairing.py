"""STAND-IN for the pairing helper's native-messaging host (CONTRACT-packaging.md): the merge takes
PAIRING's version. Here it only says that pairing is not available yet and exits 1."""

from __future__ import annotations

import sys


def main() -> int:
    print("Appairage pas encore disponible : utilisez « sidep-helper token ».", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
