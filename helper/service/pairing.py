"""STAND-IN (packaging contract): the native-messaging pairing host, replaced by the pairing branch.

Here it only exits with status 1, so that the installers have a real entry point to register.
"""

from __future__ import annotations

import sys


def main() -> int:
    print("sidep-helper : l'hôte d'appairage n'est pas encore disponible dans cette version.", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
