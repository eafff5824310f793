"""``cloudseed identity``: the keys that sign instance identity (issue #16)."""

from __future__ import annotations

import argparse
import json
import sys

from cloudseed.cli.context import ControlClient, add_group, command, output


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = add_group(subparsers, "identity",
                      "Keys that sign instance identity documents and tokens")
    cert = command(group, "certificate",
                   "Print the certificates that verify identity documents (PEM, signing first)",
                   output=False)
    cert.set_defaults(func=certificate)
    jwks = command(group, "jwks", "Print the JSON Web Key Set that verifies identity tokens",
                   output=False)
    jwks.set_defaults(func=key_set)
    keys = command(group, "keys", "List the published keys (ids and ages, never the keys)")
    keys.set_defaults(func=list_keys)
    rotate = command(group, "rotate",
                     "Sign with a new key from now on; the previous one stays published "
                     "until the next rotation, so what it signed still verifies")
    rotate.set_defaults(func=rotate_key)


def certificate(args: argparse.Namespace) -> int:
    pem = ControlClient.from_args(args).get_bytes("/v1/identity/certificate",
                                                  accept="application/x-pem-file")
    sys.stdout.write(pem.decode("ascii"))
    return 0


def key_set(args: argparse.Namespace) -> int:
    sys.stdout.write(json.dumps(ControlClient.from_args(args).get("/v1/identity/jwks.json"),
                                indent=2) + "\n")
    return 0


def list_keys(args: argparse.Namespace) -> int:
    output(args, ControlClient.from_args(args).get("/v1/identity/keys")["keys"])
    return 0


def rotate_key(args: argparse.Namespace) -> int:
    output(args, ControlClient.from_args(args).post("/v1/identity/rotate"))
    return 0
