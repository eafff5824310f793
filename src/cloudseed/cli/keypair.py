"""``cloudseed keypair …``: public keys that servers name with ``--key-name``."""

from __future__ import annotations

import argparse

from cloudseed.cli.context import ControlClient, add_group, command, output, quote, read_text

COLUMNS = ("name", "type", "fingerprint")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = add_group(subparsers, "keypair", "Key pairs (SSH public keys or X.509 certificates)")
    create = command(group, "create", "Import a public key")
    create.add_argument("name", metavar="NAME")
    create.add_argument(
        "--public-key",
        metavar="FILE",
        required=True,
        help="OpenSSH public key file (e.g. ~/.ssh/id_ed25519.pub), or a PEM certificate",
    )
    create.add_argument("--type", choices=("ssh", "x509"), default="ssh")
    create.set_defaults(func=create_keypair)
    command(group, "list", "List key pairs").set_defaults(func=list_keypairs)
    for name, func, help_text in (
        ("show", show_keypair, "Show a key pair"),
        ("delete", delete_keypair, "Delete a key pair"),
    ):
        sub = command(group, name, help_text, output=name == "show")
        sub.add_argument("keypair", metavar="KEYPAIR")
        sub.set_defaults(func=func)


def create_keypair(args: argparse.Namespace) -> int:
    public_key = read_text(args.public_key, "--public-key", "public key")
    body = {"name": args.name, "type": args.type, "public_key": public_key}
    output(args, ControlClient.from_args(args).post("/v1/keypairs", body))
    return 0


def list_keypairs(args: argparse.Namespace) -> int:
    output(args, ControlClient.from_args(args).get("/v1/keypairs")["keypairs"], COLUMNS)
    return 0


def show_keypair(args: argparse.Namespace) -> int:
    output(args, ControlClient.from_args(args).get(f"/v1/keypairs/{quote(args.keypair)}"))
    return 0


def delete_keypair(args: argparse.Namespace) -> int:
    ControlClient.from_args(args).delete(f"/v1/keypairs/{quote(args.keypair)}")
    return 0
