"""envcap.net's client against real local sockets: gzip, redirects, TLS, proxies, credentials, logs."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from envcap.net import (
    MAX_REDIRECTS,
    ClientConfig,
    RequestFailed,
    bypasses_proxy,
    proxy_for,
    redact,
    split_credentials,
    strip_credentials,
)
from envcap.net.client import HttpClient
from tests.netserve import TlsFiles, closed_port, gzipped, serve_index, serve_proxy

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture(autouse=True)
def no_proxy_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The machine's proxy variables must not decide where these requests go."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture
def client() -> Iterator[HttpClient]:
    http = HttpClient(ClientConfig(timeout=5))
    yield http
    http.close()


# -- URLs and credentials -----------------------------------------------------------------------
@pytest.mark.parametrize("url, redacted, stripped", [
    ("https://alice:hunter2@idx.example/simple", "https://<redacted>@idx.example/simple", "https://idx.example/simple"),
    ("https://__token__:pypi-AgE@p@ss@idx.example:8443/s", "https://<redacted>@idx.example:8443/s",
     "https://idx.example:8443/s"),
    ("https://idx.example/simple", "https://idx.example/simple", "https://idx.example/simple"),
    ("file:///opt/pypi/simple", "file:///opt/pypi/simple", "file:///opt/pypi/simple"),
    ("see https://u:p@a.example/x and http://v:q@b.example/", "see https://<redacted>@a.example/x and http://<redacted>@b.example/",
     "see https://a.example/x and http://b.example/"),
])
def test_redact_and_strip(url: str, redacted: str, stripped: str) -> None:
    assert redact(url) == redacted
    assert strip_credentials(url) == stripped


def test_split_credentials_decodes_like_pip() -> None:
    assert split_credentials("https://al%40ice:p%3Ass@h.example/simple") == (
        "https://h.example/simple", ("al@ice", "p:ss"))
    assert split_credentials("https://h.example/simple") == ("https://h.example/simple", None)


# -- proxies ------------------------------------------------------------------------------------
@pytest.mark.parametrize("environ, url, expected", [
    ({"HTTPS_PROXY": "http://up:3128"}, "https://pypi.org/simple/", "http://up:3128"),
    ({"https_proxy": "http://low:1", "HTTPS_PROXY": "http://UP:2"}, "https://pypi.org/", "http://low:1"),
    ({"HTTP_PROXY": "http://p:1"}, "https://pypi.org/", None),
    ({"ALL_PROXY": "http://all:1"}, "https://pypi.org/", "http://all:1"),
    ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "pypi.org"}, "https://pypi.org/simple/", None),
    ({"HTTPS_PROXY": "http://p:1", "no_proxy": ".org"}, "https://pypi.org/", None),
    ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "*"}, "https://pypi.org/", None),
    ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "ypi.org"}, "https://pypi.org/", "http://p:1"),
    ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "10.0.0.0/8, localhost"}, "https://10.1.2.3/s/", None),
    ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "pypi.org:8443"}, "https://pypi.org/", "http://p:1"),
])
def test_proxy_choice_follows_requests(environ: dict[str, str], url: str, expected: str | None) -> None:
    assert proxy_for(url, environ=environ) == expected


def test_pips_proxy_setting_wins_even_for_no_proxy_hosts() -> None:
    assert proxy_for("https://pypi.org/", "http://pip-proxy:1", environ={"NO_PROXY": "pypi.org"}) == "http://pip-proxy:1"


def test_bypass_tolerates_junk() -> None:
    import urllib.parse

    assert bypasses_proxy(urllib.parse.urlsplit("https://h.example/"), ",,, :x /bad  ") is False


# -- the client against a local server ----------------------------------------------------------
def test_gzip_is_asked_for_and_undone(client: HttpClient) -> None:
    page = b'{"files": []}' * 1000
    with serve_index() as index:
        index.routes["/simple/x/"] = gzipped(page, {"Content-Type": "application/json"})
        response = client.get(f"{index.url}/simple/x/", accept="application/json")
    assert response.status == 200 and response.body == page
    assert "gzip" in index.seen[0].headers["accept-encoding"]
    assert index.seen[0].headers["accept"] == "application/json"


def test_an_http_error_status_is_an_answer(client: HttpClient) -> None:
    with serve_index() as index:
        response = client.get(f"{index.url}/simple/nothing/")
    assert response.status == 404


def test_redirects_are_followed_up_to_the_cap(client: HttpClient) -> None:
    with serve_index() as index:
        for hop in range(3):
            index.routes[f"/r{hop}"] = (302, {"Location": f"/r{hop + 1}"}, b"")
        index.routes["/r3"] = (200, {}, b"arrived")
        response = client.get(f"{index.url}/r0")
        assert response.body == b"arrived" and response.url == f"{index.url}/r3"
        index.routes["/loop"] = (301, {"Location": "/loop"}, b"")
        with pytest.raises(RequestFailed) as failed:
            client.get(f"{index.url}/loop")
    assert failed.value.kind == "redirects" and not failed.value.no_answer
    assert f"more than {MAX_REDIRECTS} redirects" in str(failed.value)
    assert sum(1 for s in index.seen if s.path == "/loop") == MAX_REDIRECTS + 1


def test_credentials_do_not_follow_a_redirect_to_another_host() -> None:
    http = HttpClient(ClientConfig(timeout=5))
    with serve_index() as first, serve_index(host="localhost") as second:
        second.routes["/file"] = (200, {}, b"data")
        first.routes["/simple/x/"] = (302, {"Location": f"{second.url}/file"}, b"")
        url = first.url.replace("http://", "http://alice:hunter2@") + "/simple/x/"
        assert http.get(url).body == b"data"
    assert first.seen[0].headers["authorization"].startswith("Basic ")
    assert "authorization" not in second.seen[0].headers


def test_file_urls_read_folders_and_missing_files(tmp_path: Path, client: HttpClient) -> None:
    (tmp_path / "simple" / "six").mkdir(parents=True)
    (tmp_path / "simple" / "six" / "index.html").write_text("<a>six</a>", "utf-8")
    assert client.get((tmp_path / "simple" / "six").as_uri()).body == b"<a>six</a>"
    assert client.get((tmp_path / "simple" / "nope").as_uri()).status == 404
    assert client.get((tmp_path / "no-such-folder" / "simple" / "x").as_uri()).status == 404


def test_stream_gives_the_bytes_as_served_and_fails_on_a_status(client: HttpClient) -> None:
    with serve_index() as index:
        index.routes["/f.tar.gz"] = (200, {"Content-Encoding": "gzip"}, b"\x1f\x8b not decoded")
        assert b"".join(client.stream(f"{index.url}/f.tar.gz")) == b"\x1f\x8b not decoded"
        assert index.seen[0].headers["accept-encoding"] == "identity"
        with pytest.raises(RequestFailed, match="HTTP 404") as failed:
            b"".join(client.stream(f"{index.url}/missing.whl"))
    assert failed.value.kind == "status" and failed.value.status == 404


def test_a_refused_connection_is_no_answer(client: HttpClient) -> None:
    with pytest.raises(RequestFailed) as failed:
        client.get(f"http://127.0.0.1:{closed_port()}/simple/")
    assert failed.value.kind == "connect" and failed.value.no_answer
    assert failed.value.reason == "the connection was refused"


# -- TLS ----------------------------------------------------------------------------------------
def test_tls_with_pips_cert_and_without(tls: TlsFiles) -> None:
    with serve_index(tls=tls) as index:
        index.routes["/simple/x/"] = (200, {}, b"secure")
        trusted = HttpClient(ClientConfig(ca_bundle=str(tls.ca), timeout=5))
        assert trusted.get(f"{index.url}/simple/x/").body == b"secure"
        untrusted = HttpClient(ClientConfig(ca_bundle=str(tls.cert.parent / "nope.pem"), timeout=5))
        with pytest.raises(RequestFailed, match="cannot load the CA bundle") as missing_bundle:
            untrusted.get(f"{index.url}/simple/x/")
        default = HttpClient(ClientConfig(timeout=5))
        with pytest.raises(RequestFailed, match="not trusted") as failed:
            default.get(f"{index.url}/simple/x/")
    assert failed.value.kind == "tls" and failed.value.no_answer
    assert missing_bundle.value.url == f"{index.url}/simple/x/"


def test_trusted_host_skips_verification(tls: TlsFiles) -> None:
    with serve_index(tls=tls) as index:
        index.routes["/x"] = (200, {}, b"ok")
        port = index.url.rsplit(":", 1)[1]
        assert HttpClient(ClientConfig(trusted_hosts=("127.0.0.1",), timeout=5)).get(f"{index.url}/x").body == b"ok"
        assert HttpClient(ClientConfig(trusted_hosts=(f"127.0.0.1:{port}",), timeout=5)).get(
            f"{index.url}/x").body == b"ok"
        with pytest.raises(RequestFailed):
            HttpClient(ClientConfig(trusted_hosts=("127.0.0.1:1",), timeout=5)).get(f"{index.url}/x")


# -- proxies on the wire ------------------------------------------------------------------------
def test_https_goes_through_the_connect_proxy(tls: TlsFiles, monkeypatch: pytest.MonkeyPatch) -> None:
    with serve_index(tls=tls) as index, serve_proxy() as proxy:
        index.routes["/simple/x/"] = (200, {}, b"tunnelled")
        monkeypatch.setenv("HTTPS_PROXY", proxy.url.replace("http://", "http://pu:pp@"))
        http = HttpClient(ClientConfig(ca_bundle=str(tls.ca), timeout=5))
        assert http.get(f"{index.url}/simple/x/").body == b"tunnelled"
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        assert HttpClient(ClientConfig(ca_bundle=str(tls.ca), timeout=5)).get(f"{index.url}/simple/x/").body
    host_port = index.url.split("://", 1)[1]
    assert proxy.tunnelled == [host_port]  # once: the second client did not use the proxy
    assert proxy.headers[0]["proxy-authorization"].startswith("Basic ")


@pytest.mark.parametrize("refusal, reason", [("403 Forbidden", "the proxy refused the tunnel (403 Forbidden)"),
                                             (None, "the proxy refused the connection")])
def test_a_refusing_proxy_is_no_answer(refusal: str | None, reason: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with serve_proxy(refuse=refusal or "403 Forbidden") as proxy:
        url = proxy.url if refusal else f"http://127.0.0.1:{closed_port()}"
        monkeypatch.setenv("HTTPS_PROXY", url.replace("http://", "http://pu:secret-pw@"))
        with pytest.raises(RequestFailed) as failed:
            HttpClient(ClientConfig(timeout=5)).get("https://index.invalid/simple/x/")
    assert failed.value.kind == "proxy" and failed.value.no_answer
    assert failed.value.reason == reason
    assert failed.value.proxy == url.replace("http://", "http://<redacted>@")
    assert "secret-pw" not in str(failed.value) + repr(failed.value) + str(failed.value.proxy)


# -- credentials and logs -----------------------------------------------------------------------
def test_netrc_credentials_are_sent_and_never_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login alice password s3cret-netrc\n", "utf-8")
    netrc.chmod(0o600)
    caplog.set_level(logging.DEBUG, logger="envcap.net")
    with serve_index() as index:
        index.require_auth = "alice:s3cret-netrc"
        index.routes["/simple/x/"] = (200, {}, b"private")
        http = HttpClient(ClientConfig(netrc_file=str(netrc), timeout=5))
        assert http.get(f"{index.url}/simple/x/").body == b"private"
        anonymous = HttpClient(ClientConfig(timeout=5))
        assert anonymous.get(f"{index.url}/simple/x/").status == 401
    assert index.seen[0].headers["authorization"] == "Basic YWxpY2U6czNjcmV0LW5ldHJj"
    assert any(r.name == "envcap.net" and "/simple/x/" in r.getMessage() for r in caplog.records)
    assert "s3cret-netrc" not in caplog.text


def test_url_credentials_are_sent_and_redacted_from_logs_and_errors(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="envcap.net")
    with serve_index() as index:
        index.require_auth = "bob:pa55word"
        index.routes["/simple/x/"] = (200, {}, b"private")
        config = ClientConfig(credentials=(("127.0.0.1:" + index.url.rsplit(":", 1)[1], "bob", "pa55word"),),
                              timeout=5)
        assert HttpClient(config).get(f"{index.url}/simple/x/").body == b"private"
        inline = index.url.replace("http://", "http://bob:pa55word@")
        assert HttpClient(ClientConfig(timeout=5)).get(f"{inline}/simple/x/").body == b"private"
    with pytest.raises(RequestFailed) as failed:
        HttpClient(ClientConfig(timeout=5)).get(f"http://bob:pa55word@127.0.0.1:{closed_port()}/simple/")
    assert "pa55word" not in caplog.text + str(failed.value) + failed.value.url
    assert "pa55word" not in repr(config)


def test_a_broken_netrc_is_ignored_without_quoting_it(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login alice password\n macdef broken-secret-xyz", "utf-8")
    caplog.set_level(logging.DEBUG, logger="envcap.net")
    with serve_index() as index:
        index.routes["/x"] = (200, {}, b"ok")
        assert HttpClient(ClientConfig(netrc_file=str(netrc), timeout=5)).get(f"{index.url}/x").status == 200
    assert "broken-secret-xyz" not in caplog.text


def test_debug_log_names_each_request_and_its_proxy(tls: TlsFiles, monkeypatch: pytest.MonkeyPatch,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="envcap")
    with serve_index(tls=tls) as index, serve_proxy() as proxy:
        index.routes["/a"] = (200, {}, b"a")
        monkeypatch.setenv("https_proxy", proxy.url)
        HttpClient(ClientConfig(ca_bundle=str(tls.ca), timeout=5)).get(f"{index.url}/a")
    lines = [r.getMessage() for r in caplog.records if r.name == "envcap.net"]
    assert any(f"GET {index.url}/a -> 200" in line and f"via proxy {proxy.url}" in line for line in lines), lines


def test_client_config_repr_hides_passwords() -> None:
    config = ClientConfig(proxy="http://u:proxy-pw@p:1", credentials=(("h", "u", "idx-pw"),))
    assert "proxy-pw" not in repr(config) and "idx-pw" not in repr(config)


def test_no_urllib3_until_the_first_request() -> None:
    """A warm snapshot makes no request, so it must not pay for importing urllib3."""
    import subprocess
    import sys

    code = ("import sys, envcap.net, envcap.net.client, envcap.net.pipconf, envcap.snapshot.hashes; "
            "print('urllib3' in sys.modules, 'ssl' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}).stdout
    assert out.split() == ["False", "False"]
