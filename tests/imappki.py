"""The test PKI of the private Dovecot (``tests/dovecot.py``), made with ``openssl`` at run time.

:func:`make_pki` writes, in a folder: a CA, a server certificate for 127.0.0.1/localhost, a good client
certificate (CN = the mailbox user), one issued by another CA and one from the right CA that expired in
2020 (``openssl ca`` with explicit start and end dates). Standard library only.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

USER = "bal.sidep@labo.mssante.fr"
TIMEOUT = 30

CA_CONF = """\
[ ca ]
default_ca = test_ca
[ test_ca ]
dir = {dir}
database = {dir}/index.txt
new_certs_dir = {dir}/newcerts
serial = {dir}/serial
default_md = sha256
policy = any
copy_extensions = copy
[ any ]
commonName = supplied
"""



class PkiError(RuntimeError):
    pass


def _openssl(*args: str, cwd: Path | None = None) -> None:
    proc = subprocess.run(["openssl", *args], capture_output=True, text=True, cwd=cwd, timeout=TIMEOUT,
                          check=False, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise PkiError(f"openssl {' '.join(args)} failed: {proc.stderr}")


def _make_ca(directory: Path, name: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30", "-subj", f"/CN={name}",
             "-keyout", str(directory / "ca.key"), "-out", str(directory / "ca.crt"))


def _issue(ca: Path, out: Path, cn: str, *, san: str = "", start: str = "", end: str = "") -> None:
    """A key and certificate ``out``.key / ``out``.crt signed by the CA in ``ca``."""
    key, csr, crt = out.with_suffix(".key"), out.with_suffix(".csr"), out.with_suffix(".crt")
    extra = ["-addext", f"subjectAltName={san}"] if san else []
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={cn}", "-keyout", str(key), "-out", str(csr),
             *extra)
    if start:
        db = ca / "db"
        (db / "newcerts").mkdir(parents=True, exist_ok=True)
        (db / "index.txt").touch()
        if not (db / "serial").exists():
            (db / "serial").write_text("1000\n")
        (db / "ca.cnf").write_text(CA_CONF.format(dir=db))
        _openssl("ca", "-batch", "-config", str(db / "ca.cnf"), "-cert", str(ca / "ca.crt"), "-keyfile",
                 str(ca / "ca.key"), "-startdate", start, "-enddate", end, "-notext", "-in", str(csr),
                 "-out", str(crt))
    else:
        _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca / "ca.crt"), "-CAkey", str(ca / "ca.key"),
                 "-CAcreateserial", "-days", "30", "-copy_extensions", "copy", "-out", str(crt))
    csr.unlink()
    key.chmod(0o600)


@dataclass
class Pki:
    dir: Path

    @property
    def ca(self) -> Path:
        return self.dir / "ca" / "ca.crt"

    def client(self, which: str = "good") -> tuple[Path, Path]:
        """(certificate, key) of ``good``, ``other`` (another CA) or ``expired``."""
        return self.dir / f"client-{which}.crt", self.dir / f"client-{which}.key"

    @property
    def other_ca(self) -> Path:
        return self.dir / "other" / "ca.crt"


def make_pki(directory: Path, user: str = USER) -> Pki:
    """CA, server certificate (127.0.0.1, localhost), good / other-CA / expired client certificates."""
    directory.mkdir(parents=True, exist_ok=True)
    ca, other = directory / "ca", directory / "other"
    _make_ca(ca, "Autorite de test SI-DEP")
    _make_ca(other, "Autre autorite")
    _issue(ca, directory / "server", "localhost", san="IP:127.0.0.1,DNS:localhost")
    _issue(ca, directory / "client-good", user)
    _issue(other, directory / "client-other", user)
    _issue(ca, directory / "client-expired", user, start="20200101000000Z", end="20200201000000Z")
    for path in (directory / "server.key", directory / "server.crt", ca / "ca.crt"):
        path.chmod(0o644)  # read by Dovecot's processes
    return Pki(directory)
