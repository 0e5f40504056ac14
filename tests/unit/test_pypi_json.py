"""PyPI's per-release JSON: the same artifacts as the simple page, and the simple page whenever it is not usable.

The answers are recorded (tests/data/pypi/README.md); a fake client serves them and records what was asked.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from envcap.net import RequestFailed, Response
from envcap.snapshot.hashes import PYPI_SIMPLE, ArtifactResolver
from envcap.snapshot.indexes import IndexPages, release_json_url
from envcap.snapshot.sources import artifacts_from_release_json, artifacts_from_simple_json

DATA = Path(__file__).resolve().parents[1] / "data" / "pypi"
RELEASE = (DATA / "six-1.17.0.release.json").read_bytes()
SIMPLE = (DATA / "six.simple.json").read_bytes()
RELEASE_URL = "https://pypi.org/pypi/six/1.17.0/json"
SIMPLE_URL = "https://pypi.org/simple/six/"


class Served:
    """A fake client: bodies by URL (an int is a status without a body, an exception is raised)."""

    def __init__(self, pages: dict[str, bytes | int | Exception]) -> None:
        self.pages = pages
        self.asked: list[str] = []

    def get(self, url: str, *, accept: str = "*/*") -> Response:
        self.asked.append(url)
        page = self.pages.get(url, 404)
        if isinstance(page, Exception):
            raise page
        if isinstance(page, int):
            return Response(url=url, status=page, body=b"")
        return Response(url=url, status=200, body=page)


def test_the_recorded_release_json_gives_what_the_simple_page_gives() -> None:
    from_json = artifacts_from_release_json(RELEASE_URL, RELEASE, "six", "1.17.0")
    from_page = artifacts_from_simple_json(SIMPLE_URL, SIMPLE, "six", "1.17.0")
    assert from_json and sorted(from_json, key=lambda a: a.filename) == sorted(from_page, key=lambda a: a.filename)
    assert {a.filename for a in from_json} == {"six-1.17.0.tar.gz", "six-1.17.0-py2.py3-none-any.whl"}
    assert all(a.url and a.url.startswith("https://files.pythonhosted.org/packages/") and a.size for a in from_json)
    assert artifacts_from_release_json(RELEASE_URL, RELEASE, "six", "1.16.0") == []  # another release's files


def test_only_pypi_has_a_release_json() -> None:
    assert release_json_url("https://pypi.org/simple", "six", "1.17.0") == RELEASE_URL
    assert release_json_url("https://pypi.org/simple/", "scikit-learn", "1.5.2") == \
        "https://pypi.org/pypi/scikit-learn/1.5.2/json"
    assert release_json_url("https://test.pypi.org/simple/", "six", "1.0") == "https://test.pypi.org/pypi/six/1.0/json"
    for other in ("http://pypi.org/simple", "https://mirror.example/simple", "https://pypi.org/other",
                  "https://user:pw@pypi.org/simple", "file:///opt/pypi/simple", "https://download.pytorch.org/whl/cpu"):
        assert release_json_url(other, "six", "1.17.0") is None, other


def test_pypi_is_asked_for_the_release_alone() -> None:
    client = Served({RELEASE_URL: RELEASE, SIMPLE_URL: SIMPLE})
    release = ArtifactResolver(Path("/nonexistent/cache"), client=client).resolve_one("six", "1.17.0", store=False)
    assert len(release.artifacts) == 2 and release.source == "pypi"
    assert client.asked == [RELEASE_URL]


@pytest.mark.parametrize("answer", [404, 500, b"<html>not json</html>", b'{"info": {}}',
                                    json.dumps({"urls": [{"filename": "six-1.17.0.tar.gz", "digests": {"sha256": "a" * 64},
                                                          "url": "https://elsewhere.example/six-1.17.0.tar.gz"}]}).encode(),
                                    RequestFailed("status", RELEASE_URL, "HTTP 429")])
def test_anything_but_a_usable_answer_falls_back_to_the_simple_page_for_the_rest(
        answer: bytes | int | Exception) -> None:
    """A 404 for a release the simple page has (a mirror at pypi.org's name), an error or garbage: this
    release comes from the simple page, and no later one asks the JSON API again."""
    next_url = "https://pypi.org/pypi/six/1.16.0/json"
    client = Served({RELEASE_URL: answer, SIMPLE_URL: SIMPLE, next_url: RELEASE})
    pages = IndexPages(client)
    found = pages.from_index(PYPI_SIMPLE, "six", "1.17.0")
    assert sorted(a.filename for a in found) == ["six-1.17.0-py2.py3-none-any.whl", "six-1.17.0.tar.gz"]
    assert client.asked == [RELEASE_URL, SIMPLE_URL]
    assert [a.filename for a in pages.from_index(PYPI_SIMPLE, "six", "1.16.0")] == ["six-1.16.0-py2.py3-none-any.whl",
                                                                                     "six-1.16.0.tar.gz"]
    assert client.asked[2:] == [SIMPLE_URL]


def test_a_release_neither_has_keeps_the_json_api_in_use() -> None:
    """Not on PyPI at all (404 and no files on the page): no reason to stop asking the release JSON."""
    client = Served({SIMPLE_URL: SIMPLE, RELEASE_URL: RELEASE})
    pages = IndexPages(client)
    assert pages.from_index(PYPI_SIMPLE, "six", "99.0") == []
    assert len(pages.from_index(PYPI_SIMPLE, "six", "1.17.0")) == 2
    assert client.asked == ["https://pypi.org/pypi/six/99.0/json", SIMPLE_URL, RELEASE_URL]


def test_no_answer_from_pypi_is_an_unreachable_index() -> None:
    refused = RequestFailed("connect", RELEASE_URL, "the connection was refused")
    client = Served({RELEASE_URL: refused, SIMPLE_URL: SIMPLE})
    resolver = ArtifactResolver(Path("/nonexistent/cache"), client=client)
    release = resolver.resolve_one("six", "1.17.0", store=False)
    assert release.artifacts == () and "refused" in (release.error or "")
    assert [d.index for d in resolver.unreachable()] == [PYPI_SIMPLE] and client.asked == [RELEASE_URL]


def test_other_indexes_are_asked_for_their_simple_page_only() -> None:
    mine = "https://mine.example/simple"
    client = Served({"https://mine.example/simple/six/": SIMPLE})
    found = IndexPages(client).from_index(mine, "six", "1.17.0")
    assert len(found) == 2 and client.asked == ["https://mine.example/simple/six/"]


def test_one_release_finds_out_while_the_others_read_simple_pages() -> None:
    """A mirror at pypi.org's name costs one request: while a release is asked the JSON way, the
    other workers read simple pages; once that answer was usable, every later release is asked so."""
    client = Served({RELEASE_URL: RELEASE, SIMPLE_URL: SIMPLE})
    pages = IndexPages(client)
    assert pages._may_ask(PYPI_SIMPLE)  # a worker is finding out...
    assert len(pages.from_index(PYPI_SIMPLE, "six", "1.17.0")) == 2  # ...so this one reads the page
    assert client.asked == [SIMPLE_URL]
    pages._settle(PYPI_SIMPLE, True)  # the first answer was usable
    assert len(pages.from_index(PYPI_SIMPLE, "six", "1.17.0")) == 2
    assert client.asked[1:] == [RELEASE_URL]
