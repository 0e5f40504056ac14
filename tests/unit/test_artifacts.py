"""Finding each pinned release's files and hashes: local wheels, simple indexes on disk, the cache, PyPI."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from envcap.net import Response
from envcap.snapshot.hashes import ArtifactResolver, artifact_matches, artifacts_from_simple_html


def wheel(folder: Path, filename: str, content: bytes = b"") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / filename
    path.write_bytes(content or filename.encode())
    return path


@pytest.mark.parametrize("filename, name, version, expected", [
    ("six-1.16.0-py2.py3-none-any.whl", "six", "1.16.0", True),
    ("MarkupSafe-2.1.5-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl", "markupsafe", "2.1.5", True),
    ("markupsafe-2.1.5.tar.gz", "MarkupSafe", "2.1.5", True),
    ("foo_bar-1.0-py3-none-any.whl", "Foo.Bar", "1.0.0", True),  # names and versions compared normalised
    ("six-1.16.0-py2.py3-none-any.whl", "six", "1.16.1", False),
    ("six_extra-1.16.0-py3-none-any.whl", "six", "1.16.0", False),
    ("torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl", "torch", "2.13.0", False),
    ("not-a-wheel.whl", "not", "a", False),
])
def test_artifact_matches(filename: str, name: str, version: str, expected: bool) -> None:
    assert artifact_matches(filename, name, version) is expected


def test_local_wheels_are_hashed(tmp_path: Path) -> None:
    links = tmp_path / "links"
    one = wheel(links, "demo_pkg-1.0-py3-none-any.whl", b"payload one")
    wheel(links, "demo_pkg-1.1-py3-none-any.whl", b"other version")
    sdist = wheel(links, "demo-pkg-1.0.tar.gz", b"payload sdist")
    release = ArtifactResolver(tmp_path / "cache", find_links=[str(links)], offline=True).resolve_one("demo-pkg", "1.0")
    assert release.source == "find-links"
    found = {a.filename: a for a in release.artifacts}
    assert set(found) == {one.name, sdist.name}
    assert found[one.name].sha256 == hashlib.sha256(b"payload one").hexdigest()
    assert found[one.name].url == one.resolve().as_uri()
    assert found[one.name].size == len(b"payload one")


def simple_index(root: Path, project: str, body: str) -> str:
    page = root / project / "index.html"
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(body, "utf-8")
    return root.as_uri()


def test_simple_html_index_on_disk(tmp_path: Path) -> None:
    index = simple_index(tmp_path / "simple", "demo-pkg", (
        "<html><body>"
        f'<a href="../../files/demo_pkg-1.0-py3-none-any.whl#sha256={"1" * 64}">demo_pkg-1.0-py3-none-any.whl</a>'
        f'<a href="https://files.example/demo_pkg-1.0.tar.gz#sha256={"2" * 64}">demo_pkg-1.0.tar.gz</a>'
        f'<a href="demo_pkg-0.9-py3-none-any.whl#sha256={"3" * 64}">old</a>'
        '<a href="demo_pkg-1.0-py2-none-any.whl#md5=abc">md5 only: no pin possible</a>'
        "</body></html>"))
    resolver = ArtifactResolver(tmp_path / "cache", extra_indexes=[index], offline=False)
    artifacts = resolver.pages.from_index(index, "demo-pkg", "1.0")
    assert {(a.filename, a.sha256) for a in artifacts} == {("demo_pkg-1.0-py3-none-any.whl", "1" * 64),
                                                           ("demo_pkg-1.0.tar.gz", "2" * 64)}
    relative = next(a for a in artifacts if a.filename.endswith(".whl"))
    assert relative.url == (tmp_path / "files" / "demo_pkg-1.0-py3-none-any.whl").as_uri()


def test_simple_json_index_is_read_too(tmp_path: Path) -> None:
    """PEP 691 JSON answers: the file body starts with '{'."""
    body = json.dumps({"meta": {"api-version": "1.1"}, "name": "demo-pkg", "files": [
        {"filename": "demo_pkg-1.0-py3-none-any.whl", "url": "https://files.example/a.whl",
         "hashes": {"sha256": "4" * 64}, "size": 123},
        {"filename": "demo_pkg-1.0.tar.gz", "url": "https://files.example/a.tar.gz", "hashes": {"md5": "x"}}]})
    index = simple_index(tmp_path / "simple", "demo-pkg", body)
    artifacts = ArtifactResolver(tmp_path / "cache").pages.from_index(index, "demo-pkg", "1.0")
    assert [(a.filename, a.sha256, a.size) for a in artifacts] == [("demo_pkg-1.0-py3-none-any.whl", "4" * 64, 123)]


def test_html_parser_ignores_links_without_sha256() -> None:
    html = '<a href="x-1.0.tar.gz#sha512=abc">x</a><a>no href</a><a href="x-1.0-py3-none-any.whl">no hash</a>'
    assert artifacts_from_simple_html("https://idx.example/simple/x/", html, "x", "1.0") == []


def test_cache_answers_the_second_time(tmp_path: Path) -> None:
    links = tmp_path / "links"
    path = wheel(links, "demo_pkg-1.0-py3-none-any.whl")
    first = ArtifactResolver(tmp_path / "cache", find_links=[str(links)], offline=True).resolve_one("demo-pkg", "1.0")
    path.unlink()  # releases are immutable: the cached answer stands without the file
    second = ArtifactResolver(tmp_path / "cache", find_links=[str(links)], offline=True).resolve_one("demo-pkg", "1.0")
    assert second.artifacts == first.artifacts and second.artifacts


@pytest.mark.parametrize("damage", ["{broken", json.dumps({"format": 999, "artifacts": []}),
                                    json.dumps({"format": 1, "artifacts": [{"nope": 1}]})])
def test_damaged_cache_entries_are_ignored(tmp_path: Path, damage: str) -> None:
    links = tmp_path / "links"
    wheel(links, "demo_pkg-1.0-py3-none-any.whl")
    resolver = ArtifactResolver(tmp_path / "cache", find_links=[str(links)], offline=True)
    resolver.resolve_one("demo-pkg", "1.0")
    (entry,) = (tmp_path / "cache").rglob("*.json")
    entry.write_text(damage, "utf-8")
    again = ArtifactResolver(tmp_path / "cache", find_links=[str(links)], offline=True).resolve_one("demo-pkg", "1.0")
    assert [a.filename for a in again.artifacts] == ["demo_pkg-1.0-py3-none-any.whl"]


def test_a_miss_is_reported_and_not_cached(tmp_path: Path) -> None:
    resolver = ArtifactResolver(tmp_path / "cache", offline=True)
    release = resolver.resolve_one("nothing-here", "1.0")
    assert release.artifacts == () and release.error
    assert not list((tmp_path / "cache").rglob("*.json"))


def test_resolve_many_keeps_every_pin(tmp_path: Path) -> None:
    links = tmp_path / "links"
    for name in ("aa", "bb", "cc"):
        wheel(links, f"{name}-1.0-py3-none-any.whl")
    seen = []
    results = ArtifactResolver(tmp_path / "cache", find_links=[str(links)], offline=True).resolve(
        [("aa", "1.0"), ("bb", "1.0"), ("cc", "1.0"), ("dd", "1.0"), ("aa", "1.0")], progress=seen.append)
    assert set(results) == {("aa", "1.0"), ("bb", "1.0"), ("cc", "1.0"), ("dd", "1.0")}
    assert results[("dd", "1.0")].artifacts == ()
    assert len(seen) == 4


@pytest.mark.network
def test_pypi_hashes_for_a_known_release(tmp_path: Path) -> None:
    """six 1.16.0's two files, whose sha256 PyPI has published since 2021."""
    release = ArtifactResolver(tmp_path / "cache").resolve_one("six", "1.16.0")
    assert release.source == "pypi"
    assert {(a.filename, a.sha256) for a in release.artifacts} == {
        ("six-1.16.0-py2.py3-none-any.whl", "8abb2f1d86890a2dfb989f9a77cfcfd3e47c2a354b01111771326f8aa26e0254"),
        ("six-1.16.0.tar.gz", "1e61c37477a1626458e36f7b1d82aa5c9b094fa4802892072e49de9c60c4c926"),
    }
    assert all(a.url and a.url.startswith("https://files.pythonhosted.org/") for a in release.artifacts)


def test_an_index_answering_with_the_wrong_shape_is_a_miss_not_a_crash(tmp_path: Path) -> None:
    """A broken mirror (files without url, entries that are not objects) must not end the snapshot."""
    from envcap.snapshot.hashes import ArtifactResolver

    index = tmp_path / "simple"
    (index / "six").mkdir(parents=True)
    (index / "six" / "index.html").write_text('{"files": [{"filename": "six-1.16.0-py2.py3-none-any.whl", '
                                              '"hashes": {"sha256": "' + "a" * 64 + '"}}, 7]}')
    page = (index / "six" / "index.html").read_bytes()
    resolver = ArtifactResolver(tmp_path / "cache", extra_indexes=["https://mirror.example/simple"], offline=False,
                                client=PagesClient({"https://mirror.example/simple/six/": page}))
    release = resolver.resolve_one("six", "1.16.0")
    assert release.artifacts == () and release.error


class PagesClient:
    """A fake of envcap.net's client: fixed pages by URL, 404 for the rest (tests/fakes style)."""

    def __init__(self, pages: dict[str, bytes]) -> None:
        self.pages = pages
        self.asked: list[str] = []

    def get(self, url: str, *, accept: str = "*/*") -> Response:
        self.asked.append(url)
        body = self.pages.get(url)
        return Response(url=url, status=200 if body is not None else 404, body=body or b"")


def test_the_cache_is_a_few_batch_files_merged_when_they_pile_up(tmp_path: Path) -> None:
    """A cold snapshot writes one file, not one per release; more than MAX_BATCHES are merged into one."""
    from envcap.snapshot.cache import MAX_BATCHES

    links = tmp_path / "links"
    names = [f"p{i}" for i in range(MAX_BATCHES + 3)]
    for name in names:
        wheel(links, f"{name}-1.0-py3-none-any.whl")
    ArtifactResolver(tmp_path / "cache", find_links=[str(links)], offline=True).resolve(
        [(n, "1.0") for n in names[:3]])
    assert len(list((tmp_path / "cache").rglob("*.json"))) == 1
    for name in names[3:]:
        ArtifactResolver(tmp_path / "cache", find_links=[str(links)], offline=True).resolve_one(name, "1.0")
    assert len(list((tmp_path / "cache").rglob("*.json"))) <= MAX_BATCHES
    for path in links.iterdir():
        path.unlink()  # from now on only the cache can answer
    again = ArtifactResolver(tmp_path / "cache", find_links=[str(links)], offline=True).resolve(
        [(n, "1.0") for n in names])
    assert all(release.artifacts for release in again.values())


def test_a_local_wheel_is_hashed_first_and_in_big_blocks(tmp_path: Path) -> None:
    """The biggest local file starts first (it was the tail of a cold snapshot); its hash is exact."""
    from envcap.snapshot.sources import sha256_big

    big = wheel(tmp_path / "links", "big-1.0-py3-none-any.whl", b"x" * (40 << 20) + b"tail")
    assert sha256_big(big) == hashlib.sha256(big.read_bytes()).hexdigest()
    started: list[str] = []
    resolver = ArtifactResolver(tmp_path / "cache", find_links=[str(tmp_path / "links")], offline=True, workers=1)
    original = resolver.resolve_one

    def recording(name: str, version: str, *, store: bool = True) -> object:
        started.append(name)
        return original(name, version, store=store)

    resolver.resolve_one = recording  # type: ignore[method-assign, assignment]
    resolver.resolve([("aaa", "1.0"), ("big", "1.0"), ("zzz", "1.0")])
    assert started[0] == "big"
