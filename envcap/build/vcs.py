"""A VCS install's source: the locked git commit, fetched and exported on the host by git alone.

Why git alone and nothing else: fetching runs no code from the repository (hooks are off, no
checkout happens, no submodule is followed, and only the https, http, ssh, git and file transports
are allowed: never ``ext::``, which runs a command). The commit's tree is written by ``git archive``
into a tar file and unpacked here member by member (no member outside the folder, no link leading
out of it), then built in the sandbox like a local project.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import tarfile
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from envcap._subprocess import Completed, RunFailed, Runner
from envcap.errors import ArtifactError

GIT_TIMEOUT_S = 900
# Before the subcommand: settings that win over the user's and the repository's own.
SAFE_CONFIG = ("-c", "core.hooksPath=/dev/null", "-c", "protocol.allow=never", "-c", "protocol.ext.allow=never",
               "-c", "protocol.https.allow=always", "-c", "protocol.http.allow=always",
               "-c", "protocol.ssh.allow=always", "-c", "protocol.git.allow=always",
               "-c", "protocol.file.allow=always", "-c", "fetch.recurseSubmodules=false",
               "-c", "submodule.recurse=false", "-c", "core.fsmonitor=false")


def _git_env() -> Mapping[str, str]:
    return {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_LFS_SKIP_SMUDGE": "1"}


def _git(runner: Runner, args: Sequence[str], what: str) -> Completed:
    try:
        return runner(["git", *SAFE_CONFIG, *args], timeout=GIT_TIMEOUT_S, env=_git_env())
    except RunFailed as exc:
        raise ArtifactError(f"cannot run git to fetch {what}: {exc}.",
                            hint="install git, or pin a wheel of it instead of a repository") from None


def _tail(done: Completed) -> str:
    return " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])[-400:] or f"exit {done.returncode}"


def export_commit(runner: Runner, url: str, commit: str, dest: Path, what: str) -> tuple[str, ...]:
    """Writes the tree of ``commit`` from ``url`` into ``dest`` (empty); returns the members left out.

    The exact commit is fetched (shallow where the server allows it, else the branches and tags,
    then checked to hold it): a moved branch or a re-tagged release cannot change what is built.
    """
    from envcap.net import redact

    with tempfile.TemporaryDirectory(prefix="git-", dir=dest.parent) as tmp:
        repo = os.path.join(tmp, "repo.git")
        done = _git(runner, ["init", "-q", "--bare", repo], what)
        if done.returncode != 0:
            raise ArtifactError(f"git init failed while fetching {what}: {_tail(done)}.", hint="check git")
        shallow = _git(runner, ["-C", repo, "fetch", "-q", "--no-tags", "--depth", "1", url, commit], what)
        if shallow.returncode != 0:
            full = _git(runner, ["-C", repo, "fetch", "-q", "--no-tags", url, "+refs/heads/*:refs/remotes/origin/*",
                                 "+refs/tags/*:refs/tags/*"], what)
            if full.returncode != 0:
                raise ArtifactError(f"git cannot fetch {what} from {redact(url)}: {_tail(full)}.",
                                    hint="check the repository URL and your access to it (credentials, ssh keys)")
        if _git(runner, ["-C", repo, "cat-file", "-e", f"{commit}^{{commit}}"], what).returncode != 0:
            raise ArtifactError(f"the repository {redact(url)} has no commit {commit[:12]}, which the lock names for "
                                f"{what}.", hint="the history was rewritten; take a new snapshot")
        archive = os.path.join(tmp, "tree.tar")
        done = _git(runner, ["-C", repo, "archive", "--format=tar", "-o", archive, commit], what)
        if done.returncode != 0:
            raise ArtifactError(f"git cannot export {what} at {commit[:12]}: {_tail(done)}.", hint="check git")
        return unpack_tree(Path(archive), dest)


def _member_path(name: str) -> str | None:
    """A member's path below the folder, or None when it is absolute or climbs out."""
    if name.startswith("/") or "\x00" in name:
        return None
    normal = posixpath.normpath(name)
    if normal in (".", "") or normal == ".." or normal.startswith("../"):
        return None
    return normal


def unpack_tree(archive: Path, dest: Path) -> tuple[str, ...]:
    """Unpacks a tar of a source tree: folders, files and links that stay inside; nothing else.

    Why not ``tarfile.extractall``: its safe ``data`` filter exists only from Python 3.11.4 and
    3.10.12; this does the same for the members a source tree has, on every supported Python.
    """
    skipped: list[str] = []
    root = Path(os.path.realpath(dest))
    root.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive, mode="r:") as tar:
            for member in tar:
                relative = _member_path(member.name)
                if relative is None:
                    skipped.append(member.name)
                    continue
                target = root / relative
                parent = Path(os.path.realpath(target.parent))
                if parent != root and root not in parent.parents:
                    skipped.append(member.name)  # a path through a link (only inside ones exist, but still)
                    continue
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                elif member.issym():
                    link = posixpath.normpath(posixpath.join(posixpath.dirname(relative), member.linkname))
                    if member.linkname.startswith("/") or link == ".." or link.startswith("../"):
                        skipped.append(member.name)
                        continue
                    target.parent.mkdir(parents=True, exist_ok=True)
                    os.symlink(member.linkname, target)
                elif member.isfile():
                    handle = tar.extractfile(member)
                    if handle is None:
                        continue
                    target.parent.mkdir(parents=True, exist_ok=True)
                    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                                 0o700 if member.mode & 0o111 else 0o600)
                    with os.fdopen(fd, "wb") as out:
                        shutil.copyfileobj(handle, out, 1 << 20)
                else:
                    skipped.append(member.name)  # hard links, devices, FIFOs: a source tree has none
    except (tarfile.TarError, OSError) as exc:
        raise ArtifactError(f"the exported source tree cannot be unpacked: {exc}.", hint="check the disk") from None
    return tuple(skipped)


__all__ = ["SAFE_CONFIG", "export_commit", "unpack_tree"]
