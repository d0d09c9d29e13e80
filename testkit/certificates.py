"""Throwaway certificates for TLS tests: a CA of their own and certificates it signs, made with the
openssl command (a day's validity, P-256 keys), for 127.0.0.1 and localhost."""

from __future__ import annotations

import dataclasses
import os
import pathlib
import shutil
import subprocess

import pytest

# What a certificate may be used for, and the names it holds: one leaf serves a server and a client.
_LEAF_EXTENSIONS = """\
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
"""


@dataclasses.dataclass(frozen=True)
class Leaf:
    """A certificate and its key, as files."""

    cert: pathlib.Path
    key: pathlib.Path


@dataclasses.dataclass(frozen=True)
class Authority:
    """A CA's certificate (its key beside it) that signs leaves in `directory`."""

    name: str
    cert: pathlib.Path
    key: pathlib.Path
    directory: pathlib.Path

    def issue(self, name: str) -> Leaf:
        leaf = Leaf(self.directory / f"{name}.pem", self.directory / f"{name}.key")
        request = self.directory / f"{name}.csr"
        extensions = self.directory / f"{name}.ext"
        extensions.write_text(_LEAF_EXTENSIONS)
        _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                 "-keyout", leaf.key, "-out", request, "-subj", f"/CN={name}")
        _openssl("x509", "-req", "-in", request, "-CA", self.cert, "-CAkey", self.key, "-CAcreateserial",
                 "-days", "1", "-extfile", extensions, "-out", leaf.cert)
        return leaf


def authority(directory: pathlib.Path, name: str = "test-ca") -> Authority:
    """A new CA in `directory` (created if need be)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = Authority(name, directory / f"{name}.pem", directory / f"{name}.key", directory)
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", ca.key, "-out", ca.cert, "-days", "1", "-subj", f"/CN={name}",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return ca


def require_openssl() -> None:
    """Skips the test without the openssl command (fails it under CI, where it must run)."""
    if shutil.which("openssl") is None:
        if os.environ.get("CI"):
            pytest.fail("the openssl command is needed to make test certificates")
        pytest.skip("no openssl command to make test certificates")


def _openssl(*args: object) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)
