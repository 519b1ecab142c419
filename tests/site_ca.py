"""A site's own CA and the central's certificate for 127.0.0.1 and localhost, made with the openssl command: the
way docs/central.md gives (strict: Python 3.13 accepts it) or the short way (a bare ``openssl req -x509``)."""

from __future__ import annotations

import subprocess
from pathlib import Path

# the central's certificate: what docs/central.md tells a site to put in its own (Python 3.13 refuses less)
SERVER_EXTENSIONS = """subjectAltName=DNS:localhost,IP:127.0.0.1
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid,issuer
"""
CA_EXTENSIONS = ["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]


def make_site_ca(folder: Path, strict: bool = True) -> tuple[Path, Path, Path]:
    """(the CA's file, a node's bundle; the central's certificate; its key) in ``folder``. ``strict`` ones are
    checked with ``openssl verify -x509_strict``, as strict as Python 3.13 on any Python."""

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60, cwd=folder)

    folder.mkdir(parents=True, exist_ok=True)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=site test CA",
            *(CA_EXTENSIONS if strict else []), "-keyout", "ca.key", "-out", "ca.pem")  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", "central.key",
            "-out", "central.csr")  # fmt: skip
    extensions = SERVER_EXTENSIONS if strict else SERVER_EXTENSIONS.splitlines()[0] + "\n"
    (folder / "server.cnf").write_text(extensions)
    openssl("x509", "-req", "-in", "central.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "2", "-extfile", "server.cnf", "-out", "central.pem")  # fmt: skip
    if strict:
        openssl("verify", "-x509_strict", "-CAfile", "ca.pem", "central.pem")
    return folder / "ca.pem", folder / "central.pem", folder / "central.key"
