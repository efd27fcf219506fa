"""A long-lived PDF reader child: the bounded child of :mod:`helper.parse.pdftext`, kept running.

Starting Python with pypdf, pypdfium2, zxing-cpp and cryptography costs far more than reading one
certificate's barcodes, so each process that verifies certificates keeps one reader child and
sends it PDFs one at a time. What happens, step by step (:func:`ask`):

1. The child (``python -m helper.parse.pdfworker MEMORY``) runs under the same address-space limit
   as the one-shot reader; anything it would print goes to the null device (it never logs patient
   data), only its answers use its standard output.
2. A request is a frame: two little-endian 32-bit lengths, a JSON header (``trust``: the trust-list
   folder or ``-``; ``text``: read the text too), then the PDF. The answer is one length-prefixed
   JSON object, as :func:`helper.parse.pdftext.read_pdf` makes it (``null`` when unreadable).
3. The parent waits at most ``timeout`` seconds for the answer. Over time, or if the child died
   (a crash in a native library, the memory limit), the child is killed and the PDF counts as
   unreadable; the next PDF starts a new child. A child is also replaced after
   :data:`MAX_REQUESTS` PDFs, so that memory a library keeps does not accumulate.
4. A child belongs to the process that started it (checked by pid after a fork); it exits when its
   standard input closes, i.e. when that process ends, however it ends. A process that ends
   normally (``atexit``, or a ``multiprocessing`` worker's exit) also waits for it.
"""

from __future__ import annotations

import atexit
import json
import os
import struct
import subprocess
import sys
import threading
from typing import IO, Any

MAX_REQUESTS = 500
_HEAD = struct.Struct("<II")
_LEN = struct.Struct("<I")


class _Child:
    def __init__(self, memory: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "helper.parse.pdfworker", str(memory)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )
        self.memory = memory
        self.served = 0

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        try:
            self.proc.kill()
        except OSError:
            pass
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass

    def close(self) -> None:
        """Let the child end by closing its input; kill it if it does not."""
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
            self.proc.wait(timeout=2)
        except (OSError, subprocess.TimeoutExpired):
            self.kill()


_lock = threading.Lock()
_child: _Child | None = None
_owner = 0


def ask(data: bytes, trust: str, text: bool, *, timeout: float, memory: int) -> Any:
    """The child's answer for one PDF (see step 2), or None when it could not answer in time."""
    global _child, _owner
    with _lock:
        if _owner != os.getpid():  # inherited through a fork: that child is the parent's, not ours
            _child, _owner = None, os.getpid()
        if _child is not None and (not _child.alive() or _child.memory != memory or _child.served >= MAX_REQUESTS):
            _child.close()
            _child = None
        if _child is None:
            try:
                _child = _Child(memory)
            except OSError:
                return None
            _close_at_exit()
        child = _child
        child.served += 1
        answer: dict[str, Any] = {}

        def exchange() -> None:
            try:
                header = json.dumps({"trust": trust, "text": text}).encode("utf-8")
                assert child.proc.stdin is not None and child.proc.stdout is not None
                child.proc.stdin.write(_HEAD.pack(len(header), len(data)) + header + data)
                child.proc.stdin.flush()
                (size,) = _LEN.unpack(_read_exact(child.proc.stdout, _LEN.size))
                answer["value"] = json.loads(_read_exact(child.proc.stdout, size))
            except (OSError, ValueError, struct.error, EOFError, AssertionError):
                answer["failed"] = True

        worker = threading.Thread(target=exchange, daemon=True)
        worker.start()
        worker.join(timeout)
        if worker.is_alive() or "failed" in answer:
            child.kill()  # also ends a blocked exchange (its pipes close)
            worker.join()
            _child = None
            return None
        return answer.get("value")


def _read_exact(stream: IO[bytes], size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = stream.read(left)
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _close_at_exit() -> None:
    """Also close the child when this process is a ``multiprocessing`` worker: those end with
    ``os._exit`` and skip ``atexit``; the child would outlive them, unreaped, its CPU time counted
    for no one."""
    global _finalizer_pid
    if _finalizer_pid != os.getpid():
        from multiprocessing import util

        util.Finalize(None, _close, exitpriority=0)
        _finalizer_pid = os.getpid()


_finalizer_pid = 0


@atexit.register
def _close() -> None:
    global _child
    if _child is not None and _owner == os.getpid():
        _child.close()
        _child = None


def _serve(memory: int) -> int:
    from helper.parse.pdftext import limit_memory, read_pdf

    limit_memory(memory)
    answers = os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # whatever a library prints must not corrupt the answers
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the life of the child
    requests = sys.stdin.buffer
    while True:
        try:
            head = _read_exact(requests, _HEAD.size)
        except EOFError:
            return 0
        header_size, data_size = _HEAD.unpack(head)
        header = json.loads(_read_exact(requests, header_size))
        data = _read_exact(requests, data_size)
        try:
            out = read_pdf(data, header.get("trust") or "-", bool(header.get("text", True)))
        except Exception:  # noqa: BLE001 - unreadable, the child goes on
            out = None
        body = json.dumps(out).encode("utf-8")
        answers.write(_LEN.pack(len(body)) + body)
        answers.flush()


if __name__ == "__main__":
    raise SystemExit(_serve(int(sys.argv[1])))
