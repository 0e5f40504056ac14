"""A second, private dockerd for the engine-fault tests: killed on purpose, restarted, then removed.

Why a second engine: the fault tests SIGKILL dockerd in the middle of a build and of a replay, and the
machine's own engine is shared (other tests, other people). This one has its own data root, exec root,
pid file and socket, and its own bridge, so it shares no state with the main engine.

Why its own bridge and not ``--bridge=none``: a dockerd started with ``--bridge=none`` deletes any
interface called ``docker0`` while it starts (moby's ``removeDefaultBridgeInterface``), which is the
main engine's bridge; its containers then fail with "could not find bridge docker0". Seen here on
Docker 20.10. Given a bridge of its own (``--bridge=envcapfXXXX``, made here with ``ip link``), dockerd
leaves ``docker0`` alone; with ``--iptables=false --ip-masq=false --ip-forward=false`` it touches no
firewall rule or sysctl either. The teardown still checks that ``docker0`` is as it was, and puts it
back (same MAC address, same addresses, up) if it is not: re-creating the bridge is the one repair
that restarts nothing of the main engine.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

BRIDGE_PREFIX = "envcapf"


def why_not() -> str | None:
    """Why this machine cannot run a second dockerd, or None when it can."""
    if os.geteuid() != 0:
        return "starting a private dockerd needs root"
    for tool in ("dockerd", "docker", "ip"):
        if shutil.which(tool) is None:
            return f"no {tool} on PATH"
    return None


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def _link(name: str) -> dict[str, Any] | None:
    done = _ip("-j", "addr", "show", "dev", name, check=False)
    if done.returncode != 0 or not done.stdout.strip():
        return None
    found = json.loads(done.stdout)
    return found[0] if found else None


class Docker0:
    """The main engine's bridge as it was before the second engine started, and its repair."""

    def __init__(self) -> None:
        self.before = _link("docker0")

    def restore(self) -> str | None:
        """Puts docker0 back when it vanished; returns what was done, for the test log."""
        if self.before is None or _link("docker0") is not None:
            return None
        _ip("link", "add", "docker0", "type", "bridge")
        if self.before.get("address"):
            _ip("link", "set", "docker0", "address", str(self.before["address"]))
        for info in self.before.get("addr_info") or []:
            if isinstance(info, dict) and info.get("family") == "inet":
                _ip("addr", "add", f"{info['local']}/{info['prefixlen']}", "dev", "docker0", check=False)
        _ip("link", "set", "docker0", "up")
        return "docker0 had vanished and was re-created with its address"


class SecondEngine:
    def __init__(self, work: Path) -> None:
        self.data_root = work / "data"
        # unix socket paths are limited to 107 bytes: the exec root (containerd's socket inside) stays short
        self.exec_root = Path(tempfile.mkdtemp(prefix="ecf", dir="/run" if os.path.isdir("/run") else None))
        self.socket = self.exec_root / "docker.sock"
        self.pidfile = self.exec_root / "dockerd.pid"
        self.log = work / "dockerd.log"
        self.endpoint = f"unix://{self.socket}"
        self.bridge = f"{BRIDGE_PREFIX}{random.randrange(16**6):06x}"
        self.docker0 = Docker0()
        self.process: subprocess.Popen[bytes] | None = None
        self.base_image = ""

    @property
    def env(self) -> dict[str, str]:
        return dict(os.environ, DOCKER_HOST=self.endpoint)

    # -- life ---------------------------------------------------------------------------------
    def setup(self, base_image: str) -> None:
        self.base_image = base_image
        self._make_bridge()
        self.start()
        saved = subprocess.Popen(["docker", "save", base_image], stdout=subprocess.PIPE)  # from the main engine
        loaded = subprocess.run(["docker", "load", "-q"], stdin=saved.stdout, env=self.env, capture_output=True,
                                text=True, check=False, timeout=300)
        assert saved.stdout is not None
        saved.stdout.close()
        saved.wait(timeout=60)
        assert saved.returncode == 0 and loaded.returncode == 0, f"cannot copy {base_image}: {loaded.stderr}"

    def _make_bridge(self) -> None:
        used = _ip("-4", "addr").stdout + _ip("-4", "route").stdout
        for _ in range(50):
            subnet = f"10.{random.randrange(200, 250)}.{random.randrange(1, 250)}"
            if f"{subnet}." not in used:
                break
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{subnet}.1/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")

    def start(self) -> None:
        self.data_root.mkdir(parents=True, exist_ok=True)
        self._forget_dead_containerd()
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                ["dockerd", "--data-root", str(self.data_root), "--exec-root", str(self.exec_root),
                 "--pidfile", str(self.pidfile), "-H", self.endpoint, f"--bridge={self.bridge}",
                 "--iptables=false", "--ip-masq=false", "--ip-forward=false", "--log-level=warn"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the second dockerd exited ({self.process.returncode}): {self.tail()}")
            if subprocess.run(["docker", "version"], env=self.env, capture_output=True, check=False).returncode == 0:
                return
            time.sleep(0.2)
        raise AssertionError(f"the second dockerd did not answer in 60 s: {self.tail()}")

    def kill(self) -> None:
        """SIGKILL, as an OOM killer or a crash would: no cleanup of any kind."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def teardown(self) -> list[str]:
        """Stops everything this engine started and removes its files; returns notes for the test log."""
        notes = []
        with contextlib.suppress(Exception):
            if self.process is not None and self.process.poll() is not None:
                self.start()  # a clean stop lets dockerd stop its containers and unmount their layers
        self.stop()
        # What a killed dockerd leaves running (its containerd, the shims of its containers) names our
        # exec root on its command line; nothing else on the machine does. Each is ended by its pid.
        for pid in self._processes_naming(str(self.exec_root)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                notes.append(f"ended leftover process {pid}")
        for point in sorted(self._mounts_under((str(self.data_root), str(self.exec_root))), reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True, check=False)
        shutil.rmtree(self.data_root, ignore_errors=True)
        shutil.rmtree(self.exec_root, ignore_errors=True)
        _ip("link", "del", self.bridge, check=False)
        repaired = self.docker0.restore()
        if repaired:
            notes.append(repaired)
        return notes

    # -- helpers ------------------------------------------------------------------------------
    def _forget_dead_containerd(self) -> None:
        """A killed dockerd's containerd dies with it (its parent-death signal) but is reparented to PID 1,
        which on some machines (this VM's init among them) never reaps it: the zombie's PID still
        answers kill(pid, 0), so a restarted dockerd takes containerd for running, dials its dead socket
        and gives up after 15 s ("timeout waiting for containerd to start"). Its pid file is dropped then."""
        pidfile = self.exec_root / "containerd" / "containerd.pid"
        try:
            pid = int(pidfile.read_text().strip())
        except (OSError, ValueError):
            return
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
        except (OSError, IndexError):
            state = "gone"
        if state in ("Z", "X", "gone"):
            pidfile.unlink(missing_ok=True)

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    @staticmethod
    def _processes_naming(text: str) -> list[int]:
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            with contextlib.suppress(OSError):
                if text in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(entry.name))
        return found

    @staticmethod
    def _mounts_under(roots: tuple[str, ...]) -> list[str]:
        points = []
        with open("/proc/self/mounts", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                point = line.split()[1].replace("\\040", " ")
                if any(point == root or point.startswith(root + "/") for root in roots):
                    points.append(point)
        return points
