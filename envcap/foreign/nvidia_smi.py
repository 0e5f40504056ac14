"""``nvidia-smi -q`` (also ``-a``): the driver, the CUDA version it supports, and each GPU.

Why: it is what people paste when asked "which GPU and driver", and it is the only report here that
names the GPU when torch is not installed. It does not print the compute capability; ``derive``
fills that in from the product name and marks it as derived.
"""

from __future__ import annotations

import hashlib
import re

from envcap.foreign._common import collected, fail
from envcap.lock import Gpu, GpuDevice, Snapshot, Unavailable

HEADER = "NVSMI LOG"
GPU_SECTION_RE = re.compile(r"^GPU [0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-9A-Fa-f]\s*$")
FIELD_RE = re.compile(r"^(\s*)([^:]+?)\s*:\s*(.*)$")
MEMORY_RE = re.compile(r"^(\d+)\s*MiB$")


def looks_like(text: str) -> bool:
    return HEADER in text[:2000] or (re.search(r"^Driver Version\s*:", text, re.MULTILINE) is not None
                                     and re.search(r"^Attached GPUs\s*:", text, re.MULTILINE) is not None)


def parse(text: str, origin: str) -> Snapshot:
    top: dict[str, str] = {}
    sections: list[dict[str, str]] = []
    path: list[tuple[int, str]] = []
    current: dict[str, str] | None = None
    for raw in text.splitlines():
        line = raw.rstrip()
        if not line.strip() or HEADER in line:
            continue
        if GPU_SECTION_RE.match(line.strip()) and not line.startswith((" ", "\t")):
            current = {}
            sections.append(current)
            path = []
            continue
        match = FIELD_RE.match(line)
        indent = len(line) - len(line.lstrip())
        if match:
            key, value = match.group(2).strip(), match.group(3).strip()
        else:
            key, value = line.strip(), ""
        while path and path[-1][0] >= indent:
            path.pop()
        if current is None:
            if match:
                top.setdefault(key, value)
            continue
        full = " / ".join([p for _, p in path] + [key])
        if match and value:
            current.setdefault(full, value)
        else:
            path.append((indent, key))
    driver = collected(top.get("Driver Version"))
    attached = top.get("Attached GPUs", "").strip()
    if driver is None or not attached.isdigit():
        raise fail(f"{origin} lacks the 'Driver Version' and 'Attached GPUs' lines of `nvidia-smi -q` output "
                   "(is the file cut short at its start?).", hint="paste the whole output of `nvidia-smi -q`")
    count = int(attached)
    devices = []
    for index, section in enumerate(sections):
        name = section.get("Product Name")
        if not name:
            raise fail(f"{origin} has a GPU section without a 'Product Name': the `nvidia-smi -q` output is cut short.",
                       hint="paste the whole output of `nvidia-smi -q`")
        memory = MEMORY_RE.match(section.get("FB Memory Usage / Total", ""))
        uuid = section.get("GPU UUID")
        minor = section.get("Minor Number", "")
        devices.append(GpuDevice(
            index=int(minor) if minor.isdigit() else index,
            name=name,
            memory_total_bytes=int(memory.group(1)) << 20 if memory else None,
            mig_mode=collected(section.get("MIG Mode / Current")),
            ecc_mode=collected(section.get("Ecc Mode / Current")),
            uuid_sha256=hashlib.sha256(uuid.encode()).hexdigest() if uuid else None,
        ))
    if count and not devices:
        raise fail(f"{origin} reports {count} attached GPUs but lists none: the `nvidia-smi -q` output is cut short.",
                   hint="paste the whole output of `nvidia-smi -q`")
    gpu = Gpu(status="ok" if count else "no-gpu", binding="nvidia-smi", driver_version=driver,
              cuda_driver_version=collected(top.get("CUDA Version")), devices=tuple(devices))
    unavailable: tuple[Unavailable, ...] = ()
    if len(devices) < count:  # `nvidia-smi -q -i 0` describes one of several GPUs
        unavailable = (Unavailable("gpu.count", f"the report describes {len(devices)} of {count} attached GPUs"),
                       Unavailable("gpu.model", "the report leaves out some attached GPUs"))
    return Snapshot(source="nvidia-smi", gpu=gpu, unavailable=unavailable)
