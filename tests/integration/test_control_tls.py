"""TLS on the control API, and the CLI verifying it, with certificates from openssl."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from tests.support.control import RunningControl, running_control
from tests.support.tls import TlsFiles, make_tls

from cloudseed.cli.main import main
from cloudseed.control.api import control_tls
from cloudseed.errors import ConfigError
from cloudseed.settings import ControlSettings, Settings
from cloudseed.store import open_store


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def stranger(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """Another CA with its own certificates, trusted by nobody here."""
    return make_tls(tmp_path_factory.mktemp("other-tls"))


def _settings(certs: TlsFiles, *, client_ca: bool = False) -> Settings:
    return Settings(control=ControlSettings(
        tls_cert_file=str(certs.server_cert), tls_key_file=str(certs.server_key),
        tls_client_ca_file=str(certs.ca) if client_ca else ""))


@contextmanager
def _tls_control(tmp_path: Path, settings: Settings,
                 monkeypatch: pytest.MonkeyPatch) -> Iterator[RunningControl]:
    for name in ("CLOUDSEED_CA_FILE", "CLOUDSEED_CLIENT_CERT", "CLOUDSEED_CLIENT_KEY"):
        monkeypatch.delenv(name, raising=False)
    with open_store(f"sqlite:///{tmp_path / 'c.db'}") as store, \
            running_control(store, settings=settings) as running:
        monkeypatch.setenv("CLOUDSEED_URL", running.url)
        monkeypatch.setenv("CLOUDSEED_TOKEN", running.token)
        yield running


def test_the_cli_talks_tls_when_given_the_ca(
    tmp_path: Path, certs: TlsFiles, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with _tls_control(tmp_path, _settings(certs), monkeypatch) as running:
        assert running.url.startswith("https://127.0.0.1:")
        assert main(["network", "create", "net1", "--ca-file", str(certs.ca)]) == 0
        monkeypatch.setenv("CLOUDSEED_CA_FILE", str(certs.ca))
        assert main(["network", "list", "-f", "json"]) == 0
    assert '"name": "net1"' in capsys.readouterr().out


def test_the_cli_refuses_an_unverified_certificate_naming_the_fix(
    tmp_path: Path, certs: TlsFiles, stranger: TlsFiles, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with _tls_control(tmp_path, _settings(certs), monkeypatch):
        assert main(["network", "list"]) == 1
        err = capsys.readouterr().err
        assert "TLS certificate" in err
        assert "cannot be verified" in err
        assert "--ca-file or CLOUDSEED_CA_FILE" in err
        # A CA that did not sign it is no better than none.
        assert main(["network", "list", "--ca-file", str(stranger.ca)]) == 1
        assert "--ca-file" in capsys.readouterr().err


def test_plain_http_gets_no_answer_from_a_tls_listener(
    tmp_path: Path, certs: TlsFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _tls_control(tmp_path, _settings(certs), monkeypatch) as running:
        plain = running.url.replace("https://", "http://") + "/healthz"
        with pytest.raises((urllib.error.URLError, ConnectionError)):
            urllib.request.urlopen(plain, timeout=10)


def test_client_certificates_are_required_when_a_client_ca_is_set(
    tmp_path: Path, certs: TlsFiles, stranger: TlsFiles, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = _settings(certs, client_ca=True)
    with _tls_control(tmp_path, settings, monkeypatch):
        monkeypatch.setenv("CLOUDSEED_CA_FILE", str(certs.ca))
        assert main(["network", "list"]) == 1
        assert "--client-cert and --client-key" in capsys.readouterr().err
        assert main(["network", "list", "--client-cert", str(stranger.client_cert),
                     "--client-key", str(stranger.client_key)]) == 1
        assert "--client-cert and --client-key" in capsys.readouterr().err
        assert main(["network", "list", "--client-cert", str(certs.client_cert),
                     "--client-key", str(certs.client_key)]) == 0


@pytest.mark.parametrize(
    ("control", "message"),
    [
        (lambda c: ControlSettings(tls_cert_file=str(c.server_cert),
                                   tls_key_file="/nonexistent/key.pem"),
         "cannot read /nonexistent/key.pem"),
        (lambda c: ControlSettings(tls_cert_file=str(c.server_cert),
                                   tls_key_file=str(c.client_key)),
         "not a PEM certificate and its matching key"),
        (lambda c: ControlSettings(tls_key_file=str(c.server_key)),
         "control.tls_cert_file is not"),
        (lambda c: ControlSettings(tls_cert_file=str(c.server_cert),
                                   tls_key_file=str(c.server_key),
                                   tls_client_ca_file="/nonexistent/ca.pem"),
         "control.tls_client_ca_file: cannot load"),
    ],
)
def test_bad_tls_settings_refuse_to_start_naming_the_setting(
    certs: TlsFiles, control: object, message: str
) -> None:
    assert callable(control)
    with pytest.raises(ConfigError, match=message):
        control_tls(Settings(control=control(certs)))
