"""Free TCP ports for test servers, never the same for two test processes running side by side.

``bind(("127.0.0.1", 0))`` lets the kernel choose, but two pytest-xdist workers asking at the same
moment can be given the same port: the second server then fails to bind while its test talks to the
first one (a health check cannot tell them apart). So each worker draws from its own block of ports
(``PYTEST_XDIST_WORKER`` = ``gw0``, ``gw1``, ...), below the kernel's ephemeral range (32768 and up),
and keeps a port only if it can bind it on both loopback addresses.
"""

from __future__ import annotations

import errno
import os
import random
import socket

BLOCK = 3000
FIRST = 11000


def _bindable(port: int) -> bool:
    for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        try:
            with socket.socket(family) as s:
                s.bind((host, port))
        except OSError as exc:
            if family == socket.AF_INET6 and exc.errno in (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL):  # no IPv6 here
                continue
            return False
    return True


def free_port() -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    index = int(worker[2:]) + 1 if worker.startswith("gw") and worker[2:].isdigit() else 0
    low = FIRST + (index % 7) * BLOCK
    for _ in range(200):
        port = random.randrange(low, low + BLOCK)
        if _bindable(port):
            return port
    raise RuntimeError("no free port")
