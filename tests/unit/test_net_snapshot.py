"""``envcap snapshot`` over the network layer, with no real network: a local TLS index, a CONNECT proxy.

The target is a tiny venv holding two distributions (dist-info folders only), so every hash a cold
snapshot pins comes from the local index; pip's settings come from the venv's own pip.conf (the
site file pip reads from ``sys.prefix``).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from envcap.cli import main
from envcap.errors import IndexUnreachable
from envcap.lock.records import Artifact
from envcap.net import Response
from envcap.snapshot import _EarlyLookups
from envcap.snapshot.hashes import NOT_FOUND, PYPI_SIMPLE, ArtifactResolver
from tests.netserve import LocalIndex, TlsFiles, closed_port, serve_index, serve_proxy

DISTS = {"demo-pkg": "1.0", "other-thing": "2.5.1"}
WHEELS = {"demo-pkg": [("demo_pkg-1.0-py3-none-any.whl", b"demo wheel"), ("demo_pkg-1.0.tar.gz", b"demo sdist"),
                       ("demo_pkg-0.9-py3-none-any.whl", b"older")],
          "other-thing": [("other_thing-2.5.1-py3-none-any.whl", b"other wheel")]}


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv without pip whose site-packages holds DISTS as bare dist-info folders."""
    venv = tmp_path_factory.mktemp("target") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    (site,) = venv.glob("lib/python*/site-packages")
    for name, version in DISTS.items():
        info = site / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n", "utf-8")
        (info / "INSTALLER").write_text("pip\n", "utf-8")
        (info / "RECORD").write_text("", "utf-8")
    # a private package installed from a local folder: no index may ever hear its name
    private = site / "acme_private_model-0.3.dist-info"
    private.mkdir()
    (private / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-private-model\nVersion: 0.3\n", "utf-8")
    (private / "RECORD").write_text("", "utf-8")
    (private / "direct_url.json").write_text(json.dumps({"url": (venv.parent / "src").as_uri(),
                                                         "dir_info": {"editable": True}}), "utf-8")
    return venv


@pytest.fixture(autouse=True)
def no_site_conf(target: Path) -> Iterator[None]:
    """The target venv is shared by the module; each test writes its own pip.conf, if any."""
    (target / "pip.conf").unlink(missing_ok=True)
    yield
    (target / "pip.conf").unlink(missing_ok=True)


@pytest.fixture
def hermetic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No machine settings: own HOME and XDG folders, no PIP_*, proxy or CA variables, an empty cache."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("XDG_CONFIG_DIRS", str(tmp_path / "xdg"))
    monkeypatch.setenv("ENVCAP_CACHE_DIR", str(tmp_path / "cache"))
    for name in list(os.environ):
        if name.startswith("PIP_") or name.lower() in ("http_proxy", "https_proxy", "all_proxy", "no_proxy",
                                                        "requests_ca_bundle", "curl_ca_bundle", "netrc"):
            monkeypatch.delenv(name)
    return home


@pytest.fixture
def index(tls: TlsFiles) -> Iterator[LocalIndex]:
    with serve_index(tls=tls) as served:
        for name, files in WHEELS.items():
            served.simple_json(name, files)
        yield served


def site_conf(target: Path, text: str) -> None:
    (target / "pip.conf").write_text(text, "utf-8")


def snapshot(cli, target: Path, out: Path, *extra: str):  # type: ignore[no-untyped-def]
    return cli.invoke(main, ["snapshot", "--python", str(target / "bin" / "python"), "--out", str(out), *extra])


def lock_text(out: Path) -> str:
    return "".join(p.read_text("utf-8") for p in out.iterdir() if p.is_file())


def test_cold_snapshot_through_a_connect_proxy(cli, target: Path, tls: TlsFiles, index: LocalIndex,  # type: ignore[no-untyped-def]
                                               hermetic: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    site_conf(target, f"[install]\nindex-url = {index.url}/simple\ncert = {tls.ca}\n")
    with serve_proxy() as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        result = snapshot(cli, target, tmp_path / "out")
    assert result.exit_code == 0, result.stderr
    assert proxy.tunnelled and set(proxy.tunnelled) == {index.url.split("://", 1)[1]}
    lock = json.loads((tmp_path / "out" / "envcap.lock.json").read_text("utf-8"))
    dists = {d["name"]: d for d in lock["distributions"]}
    assert sorted(a["filename"] for a in dists["demo-pkg"]["artifacts"]) == [
        "demo_pkg-1.0-py3-none-any.whl", "demo_pkg-1.0.tar.gz"]
    assert dists["demo-pkg"]["artifacts"][0]["url"].startswith(f"{index.url}/files/")
    assert lock["pip_config"]["index_url"] == f"{index.url}/simple"
    assert str(target / "pip.conf") in lock["pip_config"]["sources"]
    # the index heard of these two only: never PyPI, never the private package (not even early)
    assert {s.path for s in index.seen} == {"/simple/demo-pkg/", "/simple/other-thing/"}


def test_credentials_from_netrc_are_sent_and_never_written(cli, target: Path, tls: TlsFiles,  # type: ignore[no-untyped-def]
                                                           index: LocalIndex, hermetic: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    netrc = hermetic / ".netrc"
    netrc.write_text("machine 127.0.0.1 login alice password n3trc-s3cret\n", "utf-8")
    netrc.chmod(0o600)
    index.require_auth = "alice:n3trc-s3cret"
    site_conf(target, f"[install]\nindex-url = {index.url}/simple\ncert = {tls.ca}\n")
    caplog.set_level(logging.DEBUG, logger="envcap")
    result = snapshot(cli, target, tmp_path / "out")
    assert result.exit_code == 0, result.stderr
    assert all(s.headers.get("authorization") == "Basic YWxpY2U6bjN0cmMtczNjcmV0" for s in index.seen)
    assert "pinned by hash" in result.stdout and "(2 pinned by hash)" in result.stdout
    shown = lock_text(tmp_path / "out") + result.stdout + result.stderr + caplog.text
    assert "n3trc-s3cret" not in shown
    assert any("/simple/demo-pkg/ -> 200" in r.getMessage() for r in caplog.records if r.name == "envcap.net")


def test_index_url_credentials_are_used_and_stripped_from_the_lock(cli, target: Path, tls: TlsFiles,  # type: ignore[no-untyped-def]
                                                                   index: LocalIndex, hermetic: Path,
                                                                   tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    index.require_auth = "bob:url-s3cret"
    site_conf(target, f"[install]\ncert = {tls.ca}\n")
    monkeypatch.setenv("PIP_INDEX_URL", index.url.replace("https://", "https://bob:url-s3cret@") + "/simple")
    result = snapshot(cli, target, tmp_path / "out")
    assert result.exit_code == 0, result.stderr
    lock = json.loads((tmp_path / "out" / "envcap.lock.json").read_text("utf-8"))
    assert lock["pip_config"]["index_url"] == f"{index.url}/simple"
    assert "url-s3cret" not in lock_text(tmp_path / "out") + result.stdout + result.stderr


def assert_one_sentence(result, *fragments: str) -> None:  # type: ignore[no-untyped-def]
    assert result.exit_code == IndexUnreachable.exit_code, result.stdout + result.stderr
    assert isinstance(result.exception, SystemExit)
    lines = result.stderr.splitlines()
    assert len(lines) == 2 and lines[0].startswith("error: ") and lines[1].startswith("hint: "), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert lines[0].count(". ") == 0 and lines[0].endswith(".")  # one sentence
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert "--offline" in lines[1]


@pytest.mark.parametrize("refuse", ["403 Forbidden", None])
def test_a_refusing_proxy_fails_the_snapshot_in_one_sentence(cli, target: Path, tls: TlsFiles,  # type: ignore[no-untyped-def]
                                                             hermetic: Path, tmp_path: Path, refuse: str | None,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    site_conf(target, f"[install]\ncert = {tls.ca}\n")  # PyPI itself: nothing leaves the machine
    with serve_proxy(refuse="403 Forbidden") as proxy:
        url = proxy.url if refuse else f"http://127.0.0.1:{closed_port()}"
        monkeypatch.setenv("HTTPS_PROXY", url.replace("http://", "http://pu:pr0xy-pw@"))
        result = snapshot(cli, target, tmp_path / "out")
    reason = "the proxy refused the tunnel (403 Forbidden)" if refuse else "the proxy refused the connection"
    assert_one_sentence(result, f"package index {PYPI_SIMPLE}", f"through the proxy {url.replace('//', '//<redacted>@')}",
                        reason, "2 of 2 releases")
    assert "pr0xy-pw" not in result.stderr
    assert not (tmp_path / "out").exists()
    if refuse:
        assert proxy.requests and all(r.startswith("CONNECT pypi.org:443") for r in proxy.requests)


def test_an_unreachable_index_without_a_proxy_is_named(cli, target: Path, hermetic: Path,  # type: ignore[no-untyped-def]
                                                       tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dead = f"http://127.0.0.1:{closed_port()}/simple"
    monkeypatch.setenv("PIP_INDEX_URL", dead.replace("http://", "http://u:idx-pw@"))
    result = snapshot(cli, target, tmp_path / "out")
    assert_one_sentence(result, f"package index {dead.replace('//', '//<redacted>@')} directly",
                        "the connection was refused")
    assert "idx-pw" not in result.stderr


def test_offline_makes_no_request_at_all(cli, target: Path, hermetic: Path, tmp_path: Path,  # type: ignore[no-untyped-def]
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    with serve_proxy(refuse="403 Forbidden") as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        result = snapshot(cli, target, tmp_path / "out", "--offline")
    assert result.exit_code == 0, result.stderr
    assert proxy.requests == []
    assert "was not found on any index or local folder" in result.stderr


def test_a_404_for_one_package_stays_a_warning(cli, target: Path, tls: TlsFiles, index: LocalIndex,  # type: ignore[no-untyped-def]
                                               hermetic: Path, tmp_path: Path) -> None:
    del index.routes["/simple/other-thing/"]
    index.routes["/simple/demo-pkg/"] = (503, {}, b"busy")
    site_conf(target, f"[install]\nindex-url = {index.url}/simple\ncert = {tls.ca}\n")
    result = snapshot(cli, target, tmp_path / "out")
    assert result.exit_code == 0, result.stderr
    warnings = " ".join(result.stderr.split())
    assert "other-thing 2.5.1 was not found on any index or local folder" in warnings
    assert "demo-pkg 1.0: no hash could be pinned" in warnings and "HTTP 503" in warnings


# -- the resolver's choice of sources (a fake client that records what was asked) ---------------
class RecordingClient:
    def __init__(self, pages: dict[str, bytes] | None = None) -> None:
        self.pages = pages or {}
        self.asked: list[str] = []

    def get(self, url: str, *, accept: str = "*/*") -> Response:
        self.asked.append(url)
        body = self.pages.get(url)
        return Response(url=url, status=200 if body is not None else 404, body=body or b"")


def page(*files: tuple[str, str]) -> bytes:
    return json.dumps({"files": [{"filename": f, "url": f"https://files.example/{f}", "hashes": {"sha256": h}}
                                 for f, h in files]}).encode()


def test_index_url_replaces_pypi_and_extra_indexes_add_to_it(tmp_path: Path) -> None:
    client = RecordingClient({
        "https://mine.example/simple/six/": page(("six-1.16.0-py2.py3-none-any.whl", "a" * 64)),
        "https://extra.example/simple/six/": page(("six-1.16.0.tar.gz", "b" * 64),
                                                  ("six-1.16.0-py2.py3-none-any.whl", "a" * 64)),
    })
    resolver = ArtifactResolver(tmp_path, index_url="https://mine.example/simple",
                                extra_indexes=["https://extra.example/simple"], client=client)
    release = resolver.resolve_one("six", "1.16.0")
    assert [a.filename for a in release.artifacts] == ["six-1.16.0-py2.py3-none-any.whl", "six-1.16.0.tar.gz"]
    assert release.source == "https://mine.example/simple"
    assert not any("pypi.org" in url for url in client.asked)


def test_no_index_leaves_only_find_links(tmp_path: Path) -> None:
    links = tmp_path / "links"
    links.mkdir()
    (links / "six-1.16.0-py2.py3-none-any.whl").write_bytes(b"local")
    client = RecordingClient()
    resolver = ArtifactResolver(tmp_path / "cache", index_url="https://mine.example/simple", no_index=True,
                                find_links=[str(links)], client=client)
    assert resolver.resolve_one("six", "1.16.0").source == "find-links"
    assert client.asked == []


def test_insecure_http_indexes_are_ignored_as_pip_does(tmp_path: Path) -> None:
    client = RecordingClient()
    resolver = ArtifactResolver(tmp_path, index_url="http://plain.example/simple", client=client)
    resolver.resolve_one("six", "1.16.0")
    assert client.asked == [] and "plain.example" in resolver.notes[0]
    trusted = ArtifactResolver(tmp_path, index_url="http://plain.example/simple", trusted_hosts=["plain.example"],
                               client=client)
    trusted.resolve_one("six", "1.16.0")
    assert client.asked == ["http://plain.example/simple/six/"]


def test_local_version_builds_keep_pytorchs_index(tmp_path: Path) -> None:
    client = RecordingClient({"https://download.pytorch.org/whl/cpu/torch/": page(
        ("torch-2.3.0+cpu-cp311-cp311-linux_x86_64.whl", "c" * 64))})
    release = ArtifactResolver(tmp_path, client=client).resolve_one("torch", "2.3.0+cpu")
    assert release.index_url == "https://download.pytorch.org/whl/cpu" and release.artifacts
    assert client.asked == ["https://download.pytorch.org/whl/cpu/torch/"]  # PyPI has no local versions


def test_missing_local_folders_are_skipped_quietly(tmp_path: Path) -> None:
    resolver = ArtifactResolver(tmp_path, extra_indexes=[(tmp_path / "no" / "simple").as_uri()],
                                find_links=[str(tmp_path / "no-wheels")], offline=True)
    release = resolver.resolve_one("six", "1.16.0")
    assert release.artifacts == () and resolver.unreachable() == []
    assert release.error == NOT_FOUND  # a plain miss: the absent folders are not the news


def test_json_pages_are_read_only_around_the_version(tmp_path: Path) -> None:
    """The fast path and the full parse agree, also when the page is written in another key order."""
    from envcap.snapshot.hashes import artifacts_from_simple_json

    entries = []
    for version in ("1.0", "1.0.1", "11.0", "1.0rc1", "2.0"):
        for tag in ("py3-none-any.whl", "cp311-cp311-manylinux_2_17_x86_64.whl"):
            filename = f"demo_pkg-{version}-{tag}"
            entries.append({"core-metadata": {"sha256": "0" * 64}, "filename": filename,
                            "hashes": {"sha256": str(len(entries) % 10) * 64}, "requires-python": ">=3.1.0",
                            "size": 10, "url": f"../../f/{filename}", "yanked": False})
    entries.append({"url": "x/demo-pkg-1.0.tar.gz", "hashes": {"sha256": "f" * 64}, "filename": "demo-pkg-1.0.tar.gz",
                    "yanked": "a reason longer than the first window the bytes reader decodes " * 200})
    pages: list[str | bytes] = []
    for indent in (None, 2):
        text = json.dumps({"meta": {"api-version": "1.1"}, "files": entries}, indent=indent)
        pages += [text, text.encode(), text.replace("reason", "r\u00e9ason").encode()]  # not ASCII: parsed whole
    for text in pages:
        found = artifacts_from_simple_json("https://idx.example/simple/demo-pkg/", text, "demo-pkg", "1.0")
        assert sorted(a.filename for a in found) == ["demo-pkg-1.0.tar.gz", "demo_pkg-1.0-cp311-cp311-manylinux_2_17_x86_64.whl",
                                                     "demo_pkg-1.0-py3-none-any.whl"]
        assert {a.url for a in found} >= {"https://idx.example/f/demo_pkg-1.0-py3-none-any.whl"}
        assert artifacts_from_simple_json("https://i/", text, "demo-pkg", "3.0") == []
    from envcap.snapshot.sources import _entries_near

    assert _entries_near(pages[2], ["-1.0"]) is None  # not ASCII: the whole page is parsed instead
    assert _entries_near(pages[1], ["-1.0"]) == _entries_near(str(pages[0]), ["-1.0"])


def test_early_pins_come_from_dist_info_names_and_skip_local_installs(target: Path) -> None:
    from envcap.snapshot import _venv_pins

    assert sorted(_venv_pins(target)) == [("demo_pkg", "1.0"), ("other_thing", "2.5.1")]
    assert _venv_pins(target / "nowhere") == []


def test_early_lookups_are_kept_only_for_the_same_sources(tmp_path: Path, target: Path, hermetic: Path) -> None:
    from envcap.net.pipconf import PipSettings
    from envcap.snapshot import _EarlyLookups

    early = _EarlyLookups(str(target / "bin" / "python"), tmp_path / "cache", offline=True)
    early.start()
    assert early.settings is not None and early.resolver is not None
    assert early.resolver._futures  # nothing cached yet: the guessed pins are being looked up
    first = early.resolver
    assert early.resolver_for(early.settings) is first
    other = early.resolver_for(PipSettings(index_url="https://elsewhere.example/simple"))
    assert other is not first and other.configured_index == "https://elsewhere.example/simple"
    early.close()


def started_after_one_cached_release(target: Path, cache: Path) -> _EarlyLookups:
    """Early look-ups started on a cache that already holds demo-pkg 1.0 (stored by an earlier start)."""
    from envcap.snapshot.hashes import Release

    first = _EarlyLookups(str(target / "bin" / "python"), cache, offline=True)
    first.start()
    assert first.resolver is not None
    first.resolver._store(Release("demo-pkg", "1.0", (Artifact("demo_pkg-1.0-py3-none-any.whl", "a" * 64),)))
    first.close()
    again = _EarlyLookups(str(target / "bin" / "python"), cache, offline=True)
    again.start()
    return again


def test_no_early_lookups_once_something_is_cached(tmp_path: Path, target: Path, hermetic: Path) -> None:
    """A warm snapshot must not pay for the guess: the probe's list is read from the cache as before."""
    again = started_after_one_cached_release(target, tmp_path / "cache")
    assert again.resolver is not None and not again.resolver._futures
    assert _EarlyLookups(sys.executable + "-not-in-a-venv/x/y", tmp_path, offline=True).resolver is None


def test_a_warm_start_reads_the_guessed_pins_from_the_cache_while_the_probe_runs(tmp_path: Path, target: Path,
                                                                                hermetic: Path) -> None:
    """The releases are built during start(); resolve() then only hands them out (under the asked name)."""
    import shutil

    again = started_after_one_cached_release(target, tmp_path / "cache")
    assert again.resolver is not None
    shutil.rmtree(again.resolver.cache_root)  # what start() read is all resolve() may use now
    found = again.resolver.resolve([("demo-pkg", "1.0"), ("Demo_Pkg", "1.0")])
    assert [r.name for r in found.values()] == ["demo-pkg", "Demo_Pkg"]
    assert all(r.artifacts[0].sha256 == "a" * 64 and r.source == "cache" for r in found.values())


@pytest.mark.network
def test_cold_snapshot_of_real_pypi_through_a_local_connect_proxy(cli, tmp_path: Path, hermetic: Path,  # type: ignore[no-untyped-def]
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The real index through a proxy of our own: the proxy must see the tunnel, the lock must pin six."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    (site,) = venv.glob("lib/python*/site-packages")
    info = site / "six-1.16.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: six\nVersion: 1.16.0\n", "utf-8")
    (info / "RECORD").write_text("", "utf-8")
    ca = os.environ.get("SSL_CERT_FILE")  # a machine behind an inspecting proxy names its CA here
    if ca:
        (venv / "pip.conf").write_text(f"[global]\ncert = {ca}\n", "utf-8")
    with serve_proxy() as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        result = snapshot(cli, venv, tmp_path / "out")
    assert result.exit_code == 0, result.stderr
    assert "pypi.org:443" in proxy.tunnelled
    lock = json.loads((tmp_path / "out" / "envcap.lock.json").read_text("utf-8"))
    (six,) = [d for d in lock["distributions"] if d["name"] == "six"]
    assert {a["sha256"] for a in six["artifacts"]} == {
        "8abb2f1d86890a2dfb989f9a77cfcfd3e47c2a354b01111771326f8aa26e0254",
        "1e61c37477a1626458e36f7b1d82aa5c9b094fa4802892072e49de9c60c4c926"}
