"""What every CLI command shares: settings, the control API client, output.

Command modules use these helpers so that every command takes the same
``--url``/``--token``/``-f``/``-c`` options, finds the control API the same
way, reads the operator's files the same way, and fails with one line that
says how to fix the problem.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import ssl
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import yaml

from cloudseed.errors import CloudseedError
from cloudseed.settings import Settings, load_settings

EXIT_FAILURE = 1
EXIT_USAGE = 2
DEFAULT_CONTROL_URL = "http://127.0.0.1:8774"
FORMATS = ("table", "json", "yaml", "value")
# Formats that show the human view of a record (openstack's "table" layout);
# json and yaml show the API's objects as they came.
HUMAN_FORMATS = frozenset({"table", "value"})
# Long enough for a 10,000-server import on a slow disk.
CLIENT_TIMEOUT_SECONDS = 600.0


class CliError(Exception):
    """An expected failure: printed as one line, exit code non-zero."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILURE, status: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        # The control API's HTTP status when it refused the request, else 0.
        self.status = status


def load_cli_settings(
    args: argparse.Namespace, overrides: Mapping[str, Any] | None = None
) -> Settings:
    """Settings from ``--config`` (or $CLOUDSEED_CONFIG), the environment, then flags."""
    merged: dict[str, Any] = {}
    store_url = getattr(args, "store_url", None)
    if store_url:
        merged["store.url"] = store_url
    merged.update(overrides or {})
    try:
        return load_settings(getattr(args, "config", None), overrides=merged)
    except CloudseedError as exc:
        raise CliError(exc.message) from None


# -- argparse helpers ---------------------------------------------------------


def add_group(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help_text: str
) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    """A command group (``server``, ``network`` …); bare ``cloudseed server`` shows its help."""
    group = subparsers.add_parser(name, help=help_text, description=help_text)
    group.set_defaults(print_help=group.print_help)
    return group.add_subparsers(dest=f"{name}_command", metavar="COMMAND")


def add_client_options(parser: argparse.ArgumentParser) -> None:
    """``--url`` and ``--token`` for commands that talk to the control API."""
    parser.add_argument(
        "--url",
        default=argparse.SUPPRESS,
        help=f"control API URL (default: $CLOUDSEED_URL or {DEFAULT_CONTROL_URL})",
    )
    parser.add_argument(
        "--token",
        default=argparse.SUPPRESS,
        help="control API token (default: $CLOUDSEED_TOKEN or the first control.tokens)",
    )
    add_tls_client_options(parser)


def add_tls_client_options(parser: argparse.ArgumentParser) -> None:
    """How the CLI verifies an https control API, and the certificate it shows it."""
    parser.add_argument(
        "--ca-file",
        default=argparse.SUPPRESS,
        metavar="PEM",
        help="CA bundle that signed the control API's certificate "
        "(default: $CLOUDSEED_CA_FILE, else the system's CAs)",
    )
    parser.add_argument(
        "--client-cert",
        default=argparse.SUPPRESS,
        metavar="PEM",
        help="client certificate, when the control API asks for one ($CLOUDSEED_CLIENT_CERT)",
    )
    parser.add_argument(
        "--client-key",
        default=argparse.SUPPRESS,
        metavar="PEM",
        help="its private key ($CLOUDSEED_CLIENT_KEY; default: in the certificate file)",
    )


def add_format_option(parser: argparse.ArgumentParser, default: str = "table") -> None:
    """``-f FORMAT`` and ``-c COLUMN``, as ``openstack`` has them."""
    parser.add_argument(
        "-f",
        "--format",
        dest="format",
        choices=FORMATS,
        default=default,
        help=f"output format (default: {default}); value = bare values, one record per line",
    )
    parser.add_argument(
        "-c",
        "--column",
        dest="columns",
        metavar="COLUMN",
        action="append",
        help="show only this column or field (repeatable, in the order given)",
    )


def command(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    help_text: str,
    *,
    client: bool = True,
    output: bool = True,
) -> argparse.ArgumentParser:
    """A leaf command with the shared options already added."""
    parser = subparsers.add_parser(name, help=help_text, description=help_text)
    if client:
        add_client_options(parser)
    if output:
        add_format_option(parser)
    return parser


# -- the control API client ---------------------------------------------------


@dataclass(frozen=True)
class TlsFiles:
    """The CLI's TLS files for an https control API (empty = not given)."""

    ca_file: str = ""
    client_cert: str = ""
    client_key: str = ""


class ControlClient:
    """JSON over HTTP to the control API, with errors that name their fix."""

    def __init__(
        self,
        url: str,
        token: str | None,
        timeout: float = CLIENT_TIMEOUT_SECONDS,
        tls: TlsFiles | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.tls = tls or TlsFiles()
        self._context: ssl.SSLContext | None = None

    @classmethod
    def from_args(
        cls, args: argparse.Namespace, timeout: float = CLIENT_TIMEOUT_SECONDS
    ) -> ControlClient:
        url = getattr(args, "url", None) or os.environ.get("CLOUDSEED_URL") or DEFAULT_CONTROL_URL
        token = getattr(args, "token", None) or os.environ.get("CLOUDSEED_TOKEN")
        if not token:
            settings = load_cli_settings(args)
            if settings.control.tokens:
                token = settings.control.tokens[0].reveal()
        tls = TlsFiles(
            getattr(args, "ca_file", None) or os.environ.get("CLOUDSEED_CA_FILE", ""),
            getattr(args, "client_cert", None) or os.environ.get("CLOUDSEED_CLIENT_CERT", ""),
            getattr(args, "client_key", None) or os.environ.get("CLOUDSEED_CLIENT_KEY", ""),
        )
        return cls(url, token, timeout, tls)

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def post(self, path: str, body: Any = None) -> Any:
        return self.request("POST", path, body)

    def put(self, path: str, body: Any = None) -> Any:
        return self.request("PUT", path, body)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)

    def request(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        payload = self._exchange(method, path, data, "application/json")
        return json.loads(payload) if payload else None

    def get_bytes(self, path: str, accept: str = "application/octet-stream") -> bytes:
        """A GET whose answer is not JSON (a drive image): the body as it came."""
        return self._exchange("GET", path, None, accept)

    def _exchange(self, method: str, path: str, data: bytes | None, accept: str) -> bytes:
        req = urllib.request.Request(self.url + path, data=data, method=method)  # noqa: S310
        req.add_header("Accept", accept)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        context = self._tls_context() if self.url.startswith("https:") else None
        try:
            with urllib.request.urlopen(  # noqa: S310
                req, timeout=self.timeout, context=context
            ) as resp:
                payload: bytes = resp.read()
        except urllib.error.HTTPError as exc:
            raise self._http_error(exc) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, ssl.SSLError):
                raise self._tls_error(reason) from None
            if self.url.startswith("https:") and isinstance(reason, ConnectionError):
                # TLS 1.3 checks the client's certificate after the handshake: a
                # refused or missing one shows as the server closing the connection.
                raise CliError(
                    f"the control API at {self.url} closed the TLS connection ({reason}); "
                    "if it requires client certificates (control.tls_client_ca_file), pass "
                    "--client-cert and --client-key (or CLOUDSEED_CLIENT_CERT, "
                    "CLOUDSEED_CLIENT_KEY) with one its CA signed"
                ) from None
            raise CliError(
                f"cannot reach the control API at {self.url} ({reason}); "
                "is `cloudseed serve` running? (set --url or CLOUDSEED_URL)"
            ) from None
        return payload

    def _tls_context(self) -> ssl.SSLContext:
        if self._context is None:
            from cloudseed.http.tls import tls_context

            tls = self.tls
            try:
                self._context = tls_context(tls.ca_file, tls.client_cert, tls.client_key)
            except (OSError, ssl.SSLError) as exc:
                raise CliError(
                    f"cannot load the TLS files (--ca-file {tls.ca_file or '-'}, --client-cert "
                    f"{tls.client_cert or '-'}, --client-key {tls.client_key or '-'}): {exc}"
                ) from None
        return self._context

    def _tls_error(self, reason: ssl.SSLError) -> CliError:
        text = str(reason)
        if isinstance(reason, ssl.SSLCertVerificationError):
            return CliError(
                f"the control API's TLS certificate at {self.url} cannot be verified "
                f"({reason.verify_message}); pass the CA bundle that signed it with --ca-file "
                "or CLOUDSEED_CA_FILE"
            )
        if "CERTIFICATE_REQUIRED" in text or "certificate required" in text:
            return CliError(
                f"the control API at {self.url} requires a client certificate; pass "
                "--client-cert and --client-key (or CLOUDSEED_CLIENT_CERT, CLOUDSEED_CLIENT_KEY)"
            )
        return CliError(
            f"TLS with the control API at {self.url} failed ({reason}); if it asks for a "
            "client certificate, use one signed by its control.tls_client_ca_file"
        )

    def _http_error(self, exc: urllib.error.HTTPError) -> CliError:
        body = exc.read()
        message = ""
        try:
            message = str(json.loads(body).get("message", ""))
        except (ValueError, AttributeError):
            message = body.decode("utf-8", "replace").strip()
        if exc.code == 401:
            return CliError(
                "401: the control API needs a token; set CLOUDSEED_TOKEN or pass --token"
            )
        if exc.code == 403:
            return CliError(
                "403: the control API rejected the token; check CLOUDSEED_TOKEN against "
                "control.tokens in the server's settings"
            )
        return CliError(f"{exc.code}: {message or exc.reason}", status=exc.code)


def quote(value: str) -> str:
    """One path segment of a URL (names may hold spaces or slashes)."""
    return urllib.parse.quote(value, safe="")


# -- output -------------------------------------------------------------------


def is_human(fmt: str) -> bool:
    """Whether ``fmt`` shows the human view of a record rather than the API object."""
    return fmt in HUMAN_FORMATS


def output(args: argparse.Namespace, data: Any, columns: Sequence[str] | None = None) -> None:
    """Print a command's result as its ``-f`` and ``-c`` ask; ``columns`` = a list's default."""
    emit(data, args.format, columns, selected=getattr(args, "columns", None))


def emit(
    data: Any,
    fmt: str = "table",
    columns: Sequence[str] | None = None,
    out: TextIO | None = None,
    *,
    selected: Sequence[str] | None = None,
) -> None:
    """Print a record (dict) or a list of records as a table, JSON, YAML or bare values.

    ``selected`` (``-c``) keeps only those columns, in that order, in every format.
    """
    stream = out or sys.stdout
    if selected:
        data = select_columns(data, selected)
        columns = None
    if fmt == "json":
        stream.write(json.dumps(data, indent=2, sort_keys=False) + "\n")
    elif fmt == "yaml":
        stream.write(yaml.safe_dump(data, sort_keys=False, default_flow_style=False))
    elif fmt == "value":
        stream.write(render_values(data, columns))
    elif isinstance(data, list):
        cols = list(columns or _columns_of(data))
        rows = [[_cell(item.get(col)) for col in cols] for item in data]
        stream.write(render_table([_title(c) for c in cols], rows))
    elif isinstance(data, Mapping):
        rows = [[key, _cell(value)] for key, value in data.items()]
        stream.write(render_table(["Field", "Value"], rows))
    elif data is not None:
        stream.write(f"{data}\n")


def select_columns(data: Any, wanted: Sequence[str]) -> Any:
    """Keep only the ``wanted`` columns of a record or of each record of a list.

    A column is named by its field (``mac_address``) or its table title
    (``"MAC Address"``), in any case; an unknown name is refused with the
    list of known ones rather than silently printing nothing.
    """
    if isinstance(data, Mapping):
        keys = _resolve_columns(list(data), wanted)
        return {key: data.get(key) for key in keys}
    if isinstance(data, list):
        if not data:
            return data
        keys = _resolve_columns(_columns_of(data), wanted)
        return [{key: item.get(key) for key in keys} for item in data]
    raise CliError("-c: this command prints no columns", EXIT_USAGE)


def _resolve_columns(available: Sequence[str], wanted: Sequence[str]) -> list[str]:
    by_name: dict[str, str] = {}
    for key in available:
        by_name[key.lower()] = key
        by_name[_title(key).lower()] = key
    keys: list[str] = []
    for name in wanted:
        found = by_name.get(name.strip().lower())
        if found is None:
            raise CliError(
                f"-c {name}: no such column; choose from {', '.join(available)}", EXIT_USAGE
            )
        if found not in keys:
            keys.append(found)
    return keys


def render_values(data: Any, columns: Sequence[str] | None = None) -> str:
    """``-f value``: a list prints one line per record, its values separated by a
    space; a record prints one value per line. Multi-line values are joined with
    ", " so that a line is always one record or one field (``cut``/``read``-able).
    """
    if isinstance(data, list):
        cols = list(columns or _columns_of(data))
        return "".join(" ".join(_value(item.get(c)) for c in cols) + "\n" for item in data)
    if isinstance(data, Mapping):
        return "".join(_value(value) + "\n" for value in data.values())
    return "" if data is None else f"{data}\n"


def _value(value: Any) -> str:
    return ", ".join(_cell(value).splitlines())


def render_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """An ``openstack``-style box table."""
    widths = [len(h) for h in header]
    for row in rows:
        for i, cell in enumerate(row):
            for line in cell.splitlines() or [""]:
                widths[i] = max(widths[i], len(line))
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+\n"

    def row_line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |\n"

    parts = [rule, row_line(header), rule]
    for row in rows:
        split = [cell.splitlines() or [""] for cell in row]
        for i in range(max(len(s) for s in split)):
            parts.append(row_line([s[i] if i < len(s) else "" for s in split]))
    parts.append(rule)
    return "".join(parts)


def _columns_of(items: Sequence[Any]) -> list[str]:
    cols: list[str] = []
    for item in items:
        for key in item:
            if key not in cols:
                cols.append(key)
    return cols


def _title(column: str) -> str:
    return " ".join(
        part.upper() if part in {"id", "ip", "mtu", "mac"} else part.capitalize()
        for part in column.split("_")
    )


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}='{_cell(v)}'" for k, v in value.items())
    if isinstance(value, list | tuple):
        return "\n".join(_cell(v) for v in value)
    return str(value)


def parse_key_values(pairs: Sequence[str] | None, option: str) -> dict[str, str]:
    """``K=V`` arguments (``--property``) into a dict, refusing malformed ones."""
    result: dict[str, str] = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CliError(f"{option} {pair!r}: expected KEY=VALUE", EXIT_USAGE)
        result[key] = value
    return result


# -- the operator's files -------------------------------------------------------

# The fix for each way opening a file fails, by errno.
_NO_ACCESS = "permission denied; make it readable by this user (chmod/chown) or run as its owner"
_OPEN_FIXES = {
    errno.ENOENT: "no such file; check the path",
    errno.ENOTDIR: "a part of the path is not a directory; check the path",
    errno.EISDIR: "is a directory; give a file",
    errno.EACCES: _NO_ACCESS,
    errno.EPERM: _NO_ACCESS,
    errno.ELOOP: "too many symbolic links; check the path",
}


def read_bytes(path: str, option: str) -> bytes:
    """The bytes of an operator-named file (``-`` = stdin), or a one-line CliError.

    ``option`` names where the path came from (``--user-data``, ``import FILE``)
    so the message says which argument to fix.
    """
    try:
        if path == "-":
            return sys.stdin.buffer.read()
        return Path(path).expanduser().read_bytes()
    except OSError as exc:
        fix = _OPEN_FIXES.get(exc.errno or 0, exc.strerror or str(exc))
        raise CliError(f"{option} {path}: {fix}") from None


def read_text(path: str, option: str, what: str = "text") -> str:
    """An operator-named file that must be UTF-8 ``what`` (a public key, YAML …)."""
    data = read_bytes(path, option)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CliError(
            f"{option} {path}: not UTF-8 {what} (byte 0x{data[exc.start]:02x} at offset "
            f"{exc.start}); give a UTF-8 {what} file, not a binary one"
        ) from None
