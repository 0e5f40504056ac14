"""pip's settings read as pip reads them: file order, sections, PIP_* variables, /dev/null, junk files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from envcap.net.pipconf import config_files, is_secure_origin, read_pip_settings


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home and XDG folders of our own and no PIP_* variables: the machine's pip.conf is not read."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("XDG_CONFIG_DIRS", str(tmp_path / "xdg"))
    for name in list(os.environ):
        if name.startswith("PIP_"):
            monkeypatch.delenv(name)
    return home


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, "utf-8")
    return path


def no_etc(monkeypatch: pytest.MonkeyPatch) -> None:
    """/etc/pip.conf is the machine's; tests that count files leave it out of the list."""
    import envcap.net.pipconf as pipconf

    original = pipconf.config_files

    def without_etc(prefix: str | None, environ: object) -> list[tuple[str, Path]]:
        return [(k, p) for k, p in original(prefix, environ) if p != Path("/etc/pip.conf")]  # type: ignore[arg-type]

    monkeypatch.setattr(pipconf, "config_files", without_etc)


def test_files_are_listed_in_pips_order(home: Path, tmp_path: Path) -> None:
    env = {"HOME": str(home), "XDG_CONFIG_HOME": str(home / "cfg"), "XDG_CONFIG_DIRS": f"/a{os.pathsep}/b",
           "PIP_CONFIG_FILE": str(tmp_path / "absent.conf")}
    assert config_files("/venv", env) == [
        ("global", Path("/a/pip/pip.conf")), ("global", Path("/b/pip/pip.conf")), ("global", Path("/etc/pip.conf")),
        ("user", home / ".pip" / "pip.conf"), ("user", home / "cfg" / "pip" / "pip.conf"),
        ("site", Path("/venv/pip.conf")), ("env", tmp_path / "absent.conf")]


def test_an_existing_pip_config_file_replaces_the_user_files(home: Path, tmp_path: Path) -> None:
    env_file = write(tmp_path / "env.conf", "[global]\n")
    kinds = [kind for kind, _ in config_files(None, {"HOME": str(home), "PIP_CONFIG_FILE": str(env_file)})]
    assert "user" not in kinds and kinds[-1] == "env"


def test_later_files_win_install_beats_global_and_variables_beat_all(home: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    no_etc(monkeypatch)
    write(tmp_path / "xdg" / "pip" / "pip.conf", "[install]\nindex-url = https://global-install.example/simple\n")
    write(home / ".pip" / "pip.conf", "[global]\nindex-url = https://legacy.example/simple\n"
                                      "extra-index-url = https://a.example/s https://b.example/s\n")
    write(home / ".config" / "pip" / "pip.conf", "[global]\nindex_url = https://user.example/simple\n"
                                                 "find-links =\n    /w1\n    /w2\n")
    prefix = tmp_path / "venv"
    write(prefix / "pip.conf", "[global]\nextra-index-url = https://site.example/s\ntrusted-host = h1 h2:8080\n")
    found = read_pip_settings(str(prefix))
    # [install] of the lowest file beats [global] of every later one, as in pip
    assert found.index_url == "https://global-install.example/simple"
    assert found.extra_index_urls == ("https://site.example/s",)  # replaced whole, not appended
    assert found.find_links == ("/w1", "/w2")
    assert found.trusted_hosts == ("h1", "h2:8080")
    monkeypatch.setenv("PIP_INDEX_URL", "https://env.example/simple")
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", "")  # empty values are ignored, as pip does
    monkeypatch.setenv("PIP_NO_INDEX", "yes")
    again = read_pip_settings(str(prefix))
    assert again.index_url == "https://env.example/simple" and again.no_index is True
    assert again.extra_index_urls == ("https://site.example/s",)
    assert "env:PIP_INDEX_URL" in again.sources and str(prefix / "pip.conf") in again.sources


def test_dev_null_means_no_files_at_all(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(home / ".config" / "pip" / "pip.conf", "[global]\nindex-url = https://user.example/simple\n")
    prefix = tmp_path / "venv"
    write(prefix / "pip.conf", "[global]\nfind-links = /site\n")
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_FIND_LINKS", "/from-env")
    found = read_pip_settings(str(prefix))
    assert found.index_url is None and found.find_links == ("/from-env",)
    assert found.sources == ("env:PIP_FIND_LINKS",)
    assert config_files(str(prefix), {"PIP_CONFIG_FILE": os.devnull}) == []


def test_aliases_and_booleans(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    no_etc(monkeypatch)
    monkeypatch.setenv("PIP_PYPI_URL", "https://alias.example/simple")
    monkeypatch.setenv("PIP_NO_INDEX", "maybe")
    found = read_pip_settings(None)
    assert found.index_url == "https://alias.example/simple" and found.no_index is False
    assert any("no-index" in p and "env:PIP_NO_INDEX" in p for p in found.problems)


def test_a_file_without_a_section_is_named_never_quoted(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    no_etc(monkeypatch)
    broken = write(home / ".pip" / "pip.conf", "index-url = https://alice:hunter2@private.example/simple\n")
    write(home / ".config" / "pip" / "pip.conf", "[global]\nfind-links = /still/read\n")
    found = read_pip_settings(None)
    assert found.find_links == ("/still/read",)
    assert found.problems == (f"could not parse {broken}; pip would refuse it, and envcap ignored it.",)
    assert "hunter2" not in repr(found) + json.dumps(found.problems)


def test_redacted_and_client_config(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    no_etc(monkeypatch)
    write(home / ".config" / "pip" / "pip.conf",
          "[global]\nindex-url = https://alice:hunter2@private.example/simple\n"
          "extra-index-url = https://__token__:pypi-AgE@extra.example:8443/s\n"
          "cert = /pip/ca.pem\nclient-cert = /pip/client.pem\nproxy = http://pu:pp@proxy:3128\n")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/requests/ca.pem")
    monkeypatch.setenv("NETRC", str(tmp_path / "my-netrc"))
    found = read_pip_settings(None)
    record = found.redacted()
    assert record.index_url == "https://private.example/simple"
    assert record.extra_index_urls == ("https://extra.example:8443/s",)
    text = repr(found) + repr(record)
    for secret in ("hunter2", "pypi-AgE", "alice", "__token__", "pp@"):
        assert secret not in text
    config = found.client_config()
    assert config.ca_bundle == "/pip/ca.pem"  # pip's cert beats REQUESTS_CA_BUNDLE
    assert config.client_cert == "/pip/client.pem" and config.proxy == "http://pu:pp@proxy:3128"
    assert set(config.credentials) == {("private.example", "alice", "hunter2"),
                                       ("extra.example:8443", "__token__", "pypi-AgE")}
    assert config.netrc_file == str(tmp_path / "my-netrc")
    assert config.netrc_default_hosts == ("private.example", "extra.example")
    monkeypatch.setenv("PIP_CERT", "")
    assert read_pip_settings(None).client_config().ca_bundle == "/pip/ca.pem"  # empty: ignored
    no_cert = read_pip_settings(None, {"HOME": str(home), "PIP_CONFIG_FILE": os.devnull,
                                       "CURL_CA_BUNDLE": "/curl.pem"})
    assert no_cert.client_config({"CURL_CA_BUNDLE": "/curl.pem"}).ca_bundle == "/curl.pem"


@pytest.mark.parametrize("url, trusted, secure", [
    ("https://idx.example/simple", (), True),
    ("file:///opt/pypi/simple", (), True),
    ("http://127.0.0.1:8080/simple", (), True),
    ("http://localhost/simple", (), True),
    ("http://idx.example/simple", (), False),
    ("http://idx.example:8080/simple", ("idx.example",), True),
    ("http://idx.example/simple", ("other.example",), False),
])
def test_secure_origins_as_pip(url: str, trusted: tuple[str, ...], secure: bool) -> None:
    assert is_secure_origin(url, trusted) is secure


SECRET = "Sekr1t-Pa55"
lines = st.one_of(
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60),
    st.sampled_from(["[global]", "[install]", "[", "]", "[global", "index-url", "index-url =", "= x",
                     f"index-url = https://u:{SECRET}@h/simple", f"extra-index-url = {SECRET}",
                     "no-index = perhaps", "\tcontinued", "find-links = /w", "%(x)s", "[DEFAULT]"]),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.lists(lines, max_size=12), raw=st.binary(max_size=40))
def test_junk_files_never_crash_nor_leak(home: Path, body: list[str], raw: bytes) -> None:
    conf = home / ".config" / "pip" / "pip.conf"
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_bytes("\n".join(body).encode("utf-8", "surrogatepass") + raw)
    env = {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), "XDG_CONFIG_DIRS": str(home / "none")}
    found = read_pip_settings(None, env)
    shown = json.dumps(found.problems) + repr(found) + repr(found.redacted()) + repr(found.client_config(env))
    assert f":{SECRET}@" not in shown
    for problem in found.problems:
        assert SECRET not in problem
