"""Real keys and certificates for tests, made by ssh-keygen and openssl."""

from __future__ import annotations

import subprocess
from pathlib import Path


def ssh_public_key(directory: Path, key_type: str = "ed25519", bits: int | None = None) -> str:
    path = directory / f"id_{key_type}_{bits or 0}"
    if not path.exists():
        command = [
            "ssh-keygen",
            "-q",
            "-t",
            key_type,
            "-N",
            "",
            "-C",
            "test@cloudseed",
            "-f",
            str(path),
        ]
        if bits:
            command += ["-b", str(bits)]
        subprocess.run(command, check=True)
    return Path(f"{path}.pub").read_text()


def ssh_fingerprint_md5(public_key_file: Path) -> str:
    out = subprocess.run(
        ["ssh-keygen", "-l", "-E", "md5", "-f", str(public_key_file)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return out.split()[1].removeprefix("MD5:")


def x509_certificate(directory: Path) -> str:
    cert = directory / "cert.pem"
    if not cert.exists():
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                str(directory / "key.pem"),
                "-out",
                str(cert),
                "-subj",
                "/CN=cloudseed-test",
                "-days",
                "1",
            ],
            check=True,
            capture_output=True,
        )
    return cert.read_text()


def x509_sha1_fingerprint(directory: Path) -> str:
    out = subprocess.run(
        ["openssl", "x509", "-in", str(directory / "cert.pem"), "-noout", "-fingerprint", "-sha1"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return out.strip().split("=", 1)[1].lower()
