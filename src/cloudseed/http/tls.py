"""TLS contexts: one for clients (verify the server), one for listeners.

Both come from file paths in settings; a bad file is a ``ConfigError`` that
names the setting, raised at start-up rather than at the first handshake.
"""

from __future__ import annotations

import os
import ssl

from cloudseed.errors import ConfigError


def tls_context(
    ca_file: str = "", cert_file: str = "", key_file: str = ""
) -> ssl.SSLContext:
    """Verify the server (system CAs, or ``ca_file``); present a client cert if given."""
    context = ssl.create_default_context(cafile=ca_file or None)
    if cert_file:
        context.load_cert_chain(cert_file, key_file or None)
    return context


def server_tls_context(
    cert_file: str, key_file: str, client_ca_file: str = "", *, setting: str
) -> ssl.SSLContext:
    """A listener's TLS: its certificate and key; with ``client_ca_file``, clients
    must present a certificate that CA signed. ``setting`` names the settings
    section in errors (``control``)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    for name, path in (("tls_cert_file", cert_file), ("tls_key_file", key_file)):
        if path and not os.access(path, os.R_OK):
            raise ConfigError(f"{setting}.{name}: cannot read {path}")
    try:
        context.load_cert_chain(cert_file, key_file or None)
    except ssl.SSLError as exc:
        raise ConfigError(
            f"{setting}.tls_cert_file/{setting}.tls_key_file: not a PEM certificate and its "
            f"matching key ({exc.reason})"
        ) from None
    if client_ca_file:
        try:
            context.load_verify_locations(cafile=client_ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"{setting}.tls_client_ca_file: cannot load {client_ca_file} ({exc})"
            ) from None
        context.verify_mode = ssl.CERT_REQUIRED
    return context
