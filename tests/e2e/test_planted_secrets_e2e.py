"""Planted secrets, the real part: markers planted where real configuration holds them, real runs, every output.

One project carries dozens of unique markers at once (tests/planted.py), planted through the real
entry points: the environment of ``envcap snapshot`` (PIP_* index URLs with tokens and userinfo,
Bearer/password/--api_token/--hf_token inside XLA_FLAGS, NCCL_* and OMP_*, GPU UUIDs in
CUDA_VISIBLE_DEVICES/NVIDIA_VISIBLE_DEVICES, token shapes, a private key), a venv with fake dist-infos
whose direct_url.json carries credentials, a pip.conf without a section header holding a password in
the venv's prefix, git repositories whose remotes carry a token or are scp-like with a user and a home
path, and the workload's command line of ``snapshot -- CMD`` and ``replay -- CMD``.

Scanned: every file of the lock folders (the .sets generations too), stdout and stderr of every command
with -v (the call log), ``snapshot --json``, ``show``, ``diff``, replay's report.json, its folder,
--report and --markdown, and for the image ``envcap build`` makes from the base image: its labels, its
env, ``docker history --no-trunc`` and the Dockerfile and labels the build used.

What is never scanned, on purpose: the workload's own output during replay, which envcap passes through
unchanged (it is the user's program talking to the user, like ``docker run``; rewriting it would corrupt
binary output and hide what the program printed). The workloads here print nothing of their arguments.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.planted import Planted, bearer, core, flag, gpu_uuid, key_value, leaks, private_key, token_shape

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.network]


@dataclass
class Batch:
    """The markers of this module and every output gathered so far, by where it came from."""

    rnd: random.Random = field(default_factory=lambda: random.Random(os.urandom(8)))
    planted: list[Planted] = field(default_factory=list)
    # user names and home paths: the lock records paths by design (the interpreter, the tree, the remote),
    # but an image's labels, env and history must name neither
    personal: list[Planted] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)
    threads: int = field(default_factory=lambda: random.SystemRandom().randrange(2, 1000))
    images: list[str] = field(default_factory=list)  # built here, removed at the end

    def secret(self, carrier: str, form: str, n: int = 24, *, personal: bool = False) -> str:
        """``form`` with ``{s}`` replaced by a fresh secret, recorded as planted."""
        s = core(self.rnd, n)
        text = form.format(s=s)
        (self.personal if personal else self.planted).append(Planted(carrier, text, s))
        return text

    def shaped(self, maker: object) -> str:
        text, s = maker(self.rnd)  # type: ignore[operator]
        self.planted.append(Planted(getattr(maker, "__name__", "shape"), text, s))
        return str(text)

    def record(self, name: str, done: subprocess.CompletedProcess[str]) -> None:
        self.outputs[f"{name}: stdout"] = done.stdout
        self.outputs[f"{name}: stderr"] = done.stderr

    def record_tree(self, name: str, folder: Path) -> int:
        count = 0
        for path in sorted(folder.rglob("*")):
            if path.is_file() and not path.is_symlink():
                self.outputs[f"{name}/{path.relative_to(folder)}"] = path.read_text("utf-8", "replace")
                count += 1
        return count

    def assert_no_leak(self) -> None:
        image = {k: v for k, v in self.outputs.items() if k.startswith(IMAGE_OUTPUTS) or k.endswith("/Dockerfile")}
        found = leaks(self.planted, self.outputs) + leaks(self.personal, image)
        markers = len(self.planted) + len(self.personal)
        assert not found, f"{len(found)} leaks of {markers} markers:\n" + "\n".join(
            f"  {carrier} in {where}: {text!r}" for carrier, text, where in found[:20])


IMAGE_OUTPUTS = ("image:", "build:")


def envcap(*args: str, cwd: Path, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "envcap", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, check=False)


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args], cwd=cwd, check=True,
                   capture_output=True)


def fake_dist(site: Path, name: str, direct_url: dict[str, object]) -> None:
    info = site / f"{name}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "INSTALLER").write_text("pip\n")
    (info / "RECORD").write_text("")
    (info / "direct_url.json").write_text(json.dumps(direct_url))


def planted_env(batch: Batch) -> dict[str, str]:
    """The allow-listed variables a snapshot records, each carrying markers the way real values would."""
    uuids = [batch.shaped(gpu_uuid) for _ in range(3)]
    return {
        "XLA_FLAGS": f"--xla_dump_to=/tmp/x {batch.shaped(flag)} {batch.shaped(bearer)} "
                     f"{batch.secret('key-value', 'password={s}')} --xla_flag=hf_token=" + batch.secret("flag", "{s}"),
        "TF_XLA_FLAGS": f"--tf_xla_auto_jit=2 {batch.secret('flag', '--api_token={s}')} "
                        f"{batch.secret('flag', '--hf_token {s}')}",
        "NCCL_SOCKET_IFNAME": f"eth0,{batch.shaped(key_value)}",
        "NCCL_IB_HCA": batch.secret("bearer", "Authorization: Bearer {s}"),
        "NCCL_DEBUG_FILE": f"/tmp/nccl.{batch.shaped(token_shape)}.log",
        "OMP_PLACES": f"{{0:4}} {batch.shaped(key_value)}",
        "OMP_DISPLAY_ENV": batch.shaped(token_shape),
        "TORCH_LOGS": f"+dynamo {batch.secret('query-token', 'https://logs.invalid/ingest?X-Amz-Signature={s}')}",
        "MKL_VERBOSE": batch.shaped(private_key),
        "OMP_NUM_THREADS": str(batch.threads),  # differs per run: the image is built, and its log streamed
        "CUDA_VISIBLE_DEVICES": ",".join(uuids[:2]),
        "NVIDIA_VISIBLE_DEVICES": uuids[2],
    }


def planted_pip(batch: Batch) -> dict[str, str]:
    """Index URLs on hosts that never resolve (.invalid), with userinfo and the issue's query tokens."""
    from envcap.net.pipconf import read_pip_settings

    current = read_pip_settings(None, os.environ)
    user = batch.secret("url-userinfo", "{s}")
    # the real index moves to the extras, so the venv's own pins still resolve
    extra = [current.index_url or "https://pypi.org/simple", *current.extra_index_urls,
             batch.secret("query-token", "https://pkgs.invalid/simple/?X-Amz-Algorithm=AWS4-HMAC-SHA256&"
                                         "X-Amz-Signature={s}"),
             batch.secret("query-token", "https://acct.invalid/c/simple/?sv=2022-11-02&se=2030-01-01&sig={s}"),
             batch.secret("query-token", "https://gl.invalid/api/v4/projects/1/packages/pypi/simple?access_token={s}")]
    links = [*current.find_links, batch.secret("query-token", "https://links.invalid/wheels/?token={s}")]
    return {"PIP_INDEX_URL": f"https://__token__:{user}@pypi.invalid/simple/?"
                             + batch.secret("query-token", "private_token={s}"),
            "PIP_EXTRA_INDEX_URL": " ".join(extra), "PIP_FIND_LINKS": " ".join(links)}


def make_project(batch: Batch, root: Path, remote: str, *, vcs: bool) -> tuple[Path, dict[str, str]]:
    root.mkdir()
    subprocess.run([sys.executable, "-m", "venv", str(root / ".venv")], check=True)
    site = next((root / ".venv" / "lib").glob("python3.*/site-packages"))
    fake_dist(site, "fakeurl", {"url": batch.secret("query-token", "https://files.invalid/fakeurl-1.0.tar.gz?"
                                                                     "X-Amz-Security-Token={s}&X-Amz-Expires=60"),
                                "archive_info": {}})
    fake_dist(site, "fakeauth", {"url": batch.secret("url-userinfo", "https://oauth2:{s}@files.invalid/fakeauth.whl"),
                                 "archive_info": {}})
    if vcs:  # a VCS install is vendored by build, which would clone it: only in the project that is not built
        fake_dist(site, "fakevcs", {"url": batch.secret("url-userinfo", "git+https://{s}@git.invalid/o/r.git"),
                                    "vcs_info": {"vcs": "git", "commit_id": "c" * 40}})
    # a pip.conf pip cannot parse (no section header), holding a password, in the venv's prefix
    (root / ".venv" / "pip.conf").write_text(
        "index-url = " + batch.secret("url-userinfo", "https://alice:{s}@pypi.invalid/simple") + "\n"
        + batch.secret("key-value", "password = {s}") + "\n")
    git(root, "init", "-q")
    (root / "train.py").write_text("import sys\n")
    git(root, "add", "train.py")
    git(root, "commit", "-q", "-m", "init")
    git(root, "remote", "add", "origin", remote)
    env = dict(os.environ) | planted_env(batch) | planted_pip(batch)
    return root, env


def workload_args(batch: Batch) -> list[str]:
    """Secret-looking arguments as a user passes them, quoted and unquoted."""
    return [batch.secret("flag", "--hf_token={s}"), "--password", batch.secret("flag", "{s}"),
            "-H", batch.secret("bearer", "Authorization: Bearer {s}"), batch.shaped(token_shape),
            "--api_token", batch.secret("flag", "{s}"), batch.secret("key-value", "db_password={s}"),
            batch.secret("url-userinfo", "https://bob:{s}@data.invalid/set.tar"),
            batch.secret("query-token", "https://data.invalid/x?sig={s}"), "Bearer", batch.secret("bearer", "{s}")]


@pytest.fixture(scope="module")
def batch() -> Iterator[Batch]:
    made = Batch()
    yield made
    for tag in made.images:
        subprocess.run(["docker", "image", "rm", tag], capture_output=True, check=False)


@pytest.fixture(scope="module")
def projects(batch: Batch, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, tuple[Path, dict[str, str]]]]:
    root = tmp_path_factory.mktemp("planted")
    home = batch.secret("local-path", "alice{s}", 12, personal=True)
    made = {
        # built and replayed: a token in the remote's userinfo and query
        "built": make_project(batch, root / "built", batch.secret("url-userinfo", "https://oauth2:{s}@gitlab.example.org/g/p.git?private_token=")
                              + batch.secret("query-token", "{s}"), vcs=False),
        # scp-like with a user and a home path: the image label may say neither
        "scp": make_project(batch, root / "scp", f"{home}@gitserver.corp:/home/{home}/repo.git", vcs=True),
        # a local path as the remote
        "local": make_project(batch, root / "local", f"/home/{home}/src/repo.git", vcs=True),
    }
    yield made


def test_snapshot_writes_no_planted_secret(batch: Batch, projects: dict[str, tuple[Path, dict[str, str]]]) -> None:
    for name, (root, env) in projects.items():
        done = envcap("-v", "snapshot", "--python", ".venv/bin/python", "--outputs", "out/*.txt", "--",
                      sys.executable, "-c", "import pathlib; pathlib.Path('out').mkdir(exist_ok=True); "
                      "pathlib.Path('out/r.txt').write_text('1')", *workload_args(batch), cwd=root, env=env)
        batch.record(f"snapshot {name}", done)
        assert done.returncode == 0, done.stderr[-3000:]
        assert batch.record_tree(f"lock {name}", root / ".envcap") >= 6
        assert any(p.is_dir() for p in (root / ".envcap" / ".sets").iterdir())
        as_json = envcap("snapshot", "--json", "--python", ".venv/bin/python", "--out", "json-out", cwd=root, env=env)
        batch.record(f"snapshot --json {name}", as_json)
        assert as_json.returncode == 0, as_json.stderr[-3000:]
        batch.record_tree(f"lock {name} (--json)", root / "json-out")
        for args in (["show"], ["show", "--json"]):
            batch.record(f"{' '.join(args)} {name}", envcap(*args, ".envcap", cwd=root, env=env))
    for args in (["diff"], ["diff", "--markdown"], ["diff", "--json"]):
        batch.record(" ".join(args), envcap(*args, str(projects["scp"][0] / ".envcap"),
                                            str(projects["built"][0] / ".envcap"), cwd=projects["built"][0],
                                            env=projects["built"][1]))
    lock = json.loads((projects["built"][0] / ".envcap" / "envcap.lock.json").read_text())
    assert lock["env"]["XLA_FLAGS"].count("<redacted>") >= 3, "the planted variables were recorded (redacted)"
    assert {"fakeurl", "fakeauth"} <= {d["name"] for d in lock["distributions"]}
    assert any(u["probe"] == "pip-config" for u in lock["unavailable"])
    batch.assert_no_leak()


def test_the_image_and_its_build_carry_no_planted_secret(batch: Batch, projects: dict[str, tuple[Path, dict[str, str]]],
                                                         base_image: str) -> None:
    from envcap.build import BuildOptions, NoProgress, prepare
    from envcap.engine import connect

    root, env = projects["built"]
    done = envcap("-v", "build", "--base-image", base_image, cwd=root, env=env, timeout=600)
    batch.record("build", done)
    assert done.returncode == 0, done.stderr[-3000:]
    inputs = prepare(root / ".envcap", connect(), BuildOptions(base_image=base_image), NoProgress())
    batch.outputs["build: Dockerfile used"] = inputs.dockerfile
    batch.outputs["build: labels used"] = json.dumps([inputs.labels, inputs.plan.labels])
    batch.images.append(inputs.tag)
    inspect = subprocess.run(["docker", "image", "inspect", inputs.tag], capture_output=True, text=True, check=True)
    image = json.loads(inspect.stdout)[0]
    batch.outputs["image: labels"] = json.dumps(image["Config"]["Labels"])
    batch.outputs["image: env"] = json.dumps(image["Config"]["Env"])
    batch.outputs["image: inspect"] = inspect.stdout
    batch.outputs["image: history"] = subprocess.run(["docker", "history", "--no-trunc", "--format", "{{.CreatedBy}}",
                                                      inputs.tag], capture_output=True, text=True, check=True).stdout
    for name in ("scp", "local"):  # not built (a VCS install would be cloned), but what a build would use
        other = prepare(projects[name][0] / ".envcap", connect(), BuildOptions(base_image=base_image), NoProgress())
        batch.outputs[f"build: Dockerfile used ({name})"] = other.dockerfile
        batch.outputs[f"build: labels used ({name})"] = json.dumps([other.labels, other.plan.labels])
        assert "io.envcap.lock-digest" in other.dockerfile
    assert f"OMP_NUM_THREADS={batch.threads}" in image["Config"]["Env"], "the lock's variables reached the image"
    assert "Step 1/" in done.stderr and "Running in" in done.stderr, "the build log was streamed (-v)"
    assert not any(e.startswith("XLA_FLAGS=") for e in image["Config"]["Env"]), "a redacted value is left out"
    batch.assert_no_leak()


def test_replay_reports_carry_no_planted_secret(batch: Batch, projects: dict[str, tuple[Path, dict[str, str]]],
                                                base_image: str) -> None:
    root, env = projects["built"]
    # other values on this host than in the lock: replay names each difference, quoting this host's value
    here = dict(env) | {"OMP_NUM_THREADS": "4 " + batch.secret("key-value", "password={s}"),
                        "OMP_SCHEDULE": batch.shaped(bearer), "NCCL_ALGO": batch.shaped(token_shape)}
    done = envcap("-v", "replay", "--report", "r.json", "--markdown", "r.md", "--", "python", "-c", "pass",
                  *workload_args(batch), cwd=root, env=here)
    batch.record("replay", done)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "here but" in done.stderr, "replay told of the variables set differently on this host"
    missing = envcap("replay", "--", batch.shaped(token_shape), *workload_args(batch), cwd=root, env=here)
    assert missing.returncode == 127, missing.stderr[-3000:]
    # The container's init says "[FATAL tini (6)] exec <the command> failed" on the workload's own stderr,
    # as `docker run --init` would: that stream is passed through unchanged (see the module's docstring).
    # Where the replay's launcher runs the command instead (the image's facts kept from the replay above),
    # it says "envcap: exec <the command> failed": envcap's words, redacted, and scanned with the rest.
    ours = [line for line in missing.stderr.splitlines() if not line.startswith("[FATAL tini")]
    assert any(line.startswith(("[FATAL tini", "envcap: exec ")) for line in missing.stderr.splitlines()), \
        "the init or the launcher said that the command could not run"
    batch.record("replay of a missing command", subprocess.CompletedProcess(missing.args, 127, missing.stdout,
                                                                          "\n".join(ours)))
    not_run = envcap("snapshot", "--python", ".venv/bin/python", "--out", "x", "--", batch.shaped(token_shape),
                     cwd=root, env=here)
    batch.record("snapshot of a command that cannot run", not_run)
    assert not_run.returncode != 0
    batch.record_tree("replay files", root / ".envcap" / "replays")
    for name in ("r.json", "r.md"):
        batch.outputs[f"replay --report/--markdown {name}"] = (root / name).read_text()
    report = json.loads((root / "r.json").read_text())
    assert "<redacted>" in " ".join(report["command"])
    batch.assert_no_leak()
    print(f"\nplanted-secret e2e: {len(batch.planted)} markers, {len(batch.outputs)} outputs scanned, 0 leaks")
