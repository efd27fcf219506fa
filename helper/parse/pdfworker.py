"""A long-lived PDF reader child: the bounded child of :mod:`helper.parse.pdftext`, kept running.

Starting Python with pypdf, pypdfium2, zxing-cpp and cryptography costs far more than reading one
certificate's barcodes, so each process that verifies certificates keeps one reader child and
sends it PDFs one at a time. A parse-pool worker reads most certificates' codes itself
(:mod:`helper.parse.pdftext`, step 1) and starts its child only for the first PDF that needs
pdfium or pypdf: most workers have none. What happens, step by step (:func:`ask`):

1. The child (``python -m helper.parse.pdfworker MEMORY``) runs under the same address-space limit
   as the one-shot reader; anything it would print goes to the null device (it never logs patient
   data), only its answers use its standard output.
2. A request is a frame: two little-endian 32-bit lengths, a JSON header (``trust``: the trust-list
   folder or ``-``; ``text``: read the text too; ``codes``: read the barcodes; ``fast``: try
   :func:`helper.parse.pdfcodes.fast_payloads` first, false when the parse worker already did), then the PDF. The answer is one length-prefixed
   JSON array: the object :func:`helper.parse.pdftext.read_pdf` makes (``null`` when unreadable)
   and the child's peak memory in bytes.
3. The parent waits at most ``timeout`` seconds for the answer (polling the pipes on POSIX, a
   thread elsewhere). Over time, or if the child died
   (a crash in a native library, the memory limit), the child is killed and the PDF counts as
   unreadable; the next PDF starts a new child. A child whose peak memory (it sends it with each
   answer) passed :data:`MAX_CHILD_RSS` is replaced, so that memory a library keeps after a big
   page does not stay taken; and, whatever its memory, after :data:`MAX_REQUESTS` PDFs. (Starting a
   child costs some 0.2 s of CPU: replacing it every few hundred PDFs cost more than reading them.)
4. A child belongs to the process that started it (checked by pid after a fork); it exits when its
   standard input closes, i.e. when that process ends, however it ends. A process that ends
   normally (``atexit``, or a ``multiprocessing`` worker's exit) also waits for it.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import struct
import subprocess
import sys
import threading
import time
from typing import IO, Any

MAX_REQUESTS = 50_000
MAX_CHILD_RSS = 160 * 1024 * 1024
_HEAD = struct.Struct("<II")
_LEN = struct.Struct("<I")
_POLL = os.name == "posix" and hasattr(select, "poll")


class _Child:
    def __init__(self, memory: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "helper.parse.pdfworker", str(memory)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )
        self.memory = memory
        self.served = 0
        self.peak_rss = 0  # bytes, as the child last reported it

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


def ask(data: bytes, trust: str, text: bool, *, timeout: float, memory: int, codes: bool = True,
        fast: bool = True) -> Any:
    """The child's answer for one PDF (see step 2), or None when it could not answer in time.
    ``codes=False``: the text only; ``fast=False``: the caller already tried the fast path."""
    global _child, _owner
    with _lock:
        if _owner != os.getpid():  # inherited through a fork: that child is the parent's, not ours
            _child, _owner = None, os.getpid()
        if _child is not None and (not _child.alive() or _child.memory != memory or _child.served >= MAX_REQUESTS
                                   or _child.peak_rss > MAX_CHILD_RSS):
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
        header = json.dumps({"trust": trust, "text": text, "codes": codes, "fast": fast}).encode("utf-8")
        request = _HEAD.pack(len(header), len(data)) + header + data
        exchange = _exchange_polled if _POLL else _exchange_threaded
        try:
            value, rss = exchange(child.proc, request, timeout)
            child.peak_rss = int(rss)
            return value
        except (OSError, ValueError, TypeError, struct.error, EOFError, TimeoutError):
            child.kill()  # over time, dead, or answering nonsense: the next PDF starts a new child
            _child = None
            return None


def _exchange_polled(proc: subprocess.Popen, request: bytes, timeout: float) -> Any:
    """POSIX: write the request and read the answer on the pipes themselves, waiting with poll()
    until the deadline (no thread per PDF: fewer context switches on a loaded machine)."""
    assert proc.stdin is not None and proc.stdout is not None
    deadline = time.monotonic() + timeout
    out_fd, in_fd = proc.stdin.fileno(), proc.stdout.fileno()
    os.set_blocking(out_fd, False)
    view, sent = memoryview(request), 0
    poller = select.poll()
    poller.register(out_fd, select.POLLOUT)
    while sent < len(request):
        _wait(poller, deadline)
        try:
            sent += os.write(out_fd, view[sent : sent + 1024 * 1024])
        except BlockingIOError:
            continue
    poller.unregister(out_fd)
    poller.register(in_fd, select.POLLIN)
    answer = bytearray()
    need, size = _LEN.size, None
    while True:
        while len(answer) < need:
            _wait(poller, deadline)
            chunk = os.read(in_fd, max(64 * 1024, need - len(answer)))
            if not chunk:
                raise EOFError
            answer += chunk
        if size is not None:
            return json.loads(bytes(answer[_LEN.size : need]))
        (size,) = _LEN.unpack_from(answer)
        need = _LEN.size + size


def _wait(poller: Any, deadline: float) -> None:
    left = deadline - time.monotonic()
    if left <= 0 or not poller.poll(max(1, int(left * 1000))):
        raise TimeoutError


def _exchange_threaded(proc: subprocess.Popen, request: bytes, timeout: float) -> Any:
    """Elsewhere (Windows pipes cannot be polled): blocking I/O in a thread, waited for ``timeout``."""
    answer: dict[str, Any] = {}

    def exchange() -> None:
        try:
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(request)
            proc.stdin.flush()
            (size,) = _LEN.unpack(_read_exact(proc.stdout, _LEN.size))
            answer["value"] = json.loads(_read_exact(proc.stdout, size))
        except (OSError, ValueError, struct.error, EOFError, AssertionError):
            answer["failed"] = True

    worker = threading.Thread(target=exchange, daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        proc.kill()  # ends the blocked exchange (its pipes close)
        worker.join()
        raise TimeoutError
    if "failed" in answer:
        raise EOFError
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
            trust = (header.get("trust") or "-") if header.get("codes", True) else None
            out = read_pdf(data, trust, bool(header.get("text", True)), bool(header.get("fast", True)))
        except Exception:  # noqa: BLE001 - unreadable, the child goes on
            out = None
        body = json.dumps([out, _peak_rss()]).encode("utf-8")
        answers.write(_LEN.pack(len(body)) + body)
        answers.flush()


def _peak_rss() -> int:
    """This process's own peak memory in bytes. On Linux, ``VmHWM`` of /proc/self/status: the peak
    of this address space only. ``ru_maxrss`` would not do: Linux carries the peak of the process
    that started us across ``exec``, so a child of a large service would look over its ceiling at
    once and be replaced after every PDF."""
    from helper.parse.pdftext import proc_status_bytes

    peak = proc_status_bytes(b"VmHWM")
    if peak:
        return peak
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux
    except (ImportError, OSError):
        return 0


if __name__ == "__main__":
    raise SystemExit(_serve(int(sys.argv[1])))
