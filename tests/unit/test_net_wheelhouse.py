"""``envcap build``'s downloads take the same client as the snapshot: pip's cert, the proxy, netrc."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from envcap.build.wheelhouse import Wheelhouse
from envcap.errors import ArtifactError
from envcap.lock.records import Artifact
from tests.netserve import TlsFiles, closed_port, serve_index, serve_proxy


@pytest.fixture
def host_pip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tls: TlsFiles) -> Path:
    """The host's pip settings: no files, PIP_CERT pointing at the test CA, no proxy, a private .netrc."""
    for name in list(os.environ):
        if name.startswith("PIP_") or name.lower() in ("http_proxy", "https_proxy", "all_proxy", "no_proxy",
                                                        "requests_ca_bundle", "curl_ca_bundle"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_CERT", str(tls.ca))
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login carol password wh-s3cret\n", "utf-8")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    return netrc


def test_download_through_the_proxy_with_pips_cert_and_netrc(tmp_path: Path, tls: TlsFiles, host_pip: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    data = b"wheel bytes" * 10_000
    with serve_index(tls=tls) as index, serve_proxy() as proxy:
        index.require_auth = "carol:wh-s3cret"
        index.routes["/files/w-1.0-py3-none-any.whl"] = (200, {}, data)
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        artifact = Artifact("w-1.0-py3-none-any.whl", hashlib.sha256(data).hexdigest(),
                            f"{index.url}/files/w-1.0-py3-none-any.whl", len(data))
        path = Wheelhouse(tmp_path / "cache").fetch([artifact])[artifact.sha256]
    assert path.read_bytes() == data
    assert proxy.tunnelled == [index.url.split("://", 1)[1]]
    assert index.seen[0].headers["accept-encoding"] == "identity"


def test_a_refusing_proxy_is_one_artifact_error(tmp_path: Path, host_pip: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    with serve_proxy(refuse="403 Forbidden") as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        artifact = Artifact("w-1.0-py3-none-any.whl", "a" * 64, "https://files.example/w-1.0-py3-none-any.whl")
        with pytest.raises(ArtifactError) as failed:
            Wheelhouse(tmp_path / "cache").fetch([artifact])
    assert failed.value.message == (f"cannot download w-1.0-py3-none-any.whl from files.example through the proxy "
                                    f"{proxy.url}: the proxy refused the tunnel (403 Forbidden).")
    assert "HTTPS_PROXY" in (failed.value.hint or "")


def test_a_dead_host_is_one_artifact_error(tmp_path: Path, host_pip: Path) -> None:
    artifact = Artifact("w-1.0-py3-none-any.whl", "a" * 64,
                        f"https://u:pw-in-url@127.0.0.1:{closed_port()}/w-1.0-py3-none-any.whl")
    with pytest.raises(ArtifactError, match=r"from 127\.0\.0\.1:\d+: the connection was refused\.$") as failed:
        Wheelhouse(tmp_path / "cache").fetch([artifact])
    assert "pw-in-url" not in failed.value.message
