"""A self-signed certificate for 127.0.0.1, for tests of TLS verification."""

from __future__ import annotations

import shutil
import subprocess
import typing as t

import pytest

if t.TYPE_CHECKING:
    from pathlib import Path


def self_signed_cert(tmp_path: Path) -> tuple[Path, Path]:
    """Make a certificate and key for 127.0.0.1 in ``tmp_path`` with openssl (skip the test without it).

    Returns:
        The certificate's and the key's paths.
    """
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed, so no self-signed certificate can be made")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        capture_output=True,
        timeout=60,
        check=True,
    )
    return cert, key
