"""What a result was measured on: versions, device, threads; recorded in every result file.

Speed numbers mean nothing without the machine and software they came from, so every answer
file, speed table and comparison carries this block.
"""

from __future__ import annotations

import platform
import sys
import time
from pathlib import Path

import torch

from ..version import __version__


def cpu_name() -> str:
    """The CPU model name (``/proc/cpuinfo`` on Linux, else what `platform` knows)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown"


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return "Apple MPS"
    return cpu_name()


def environment_info(device: torch.device | str) -> dict:
    """Versions and hardware of this process, for a result file's ``meta`` block."""
    import transformers

    device = torch.device(device)
    info = {
        "library": "jakiro",
        "library_version": __version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "device": str(device),
        "device_name": device_name(device),
        "cpu": cpu_name(),
        "threads": torch.get_num_threads(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if device.type == "cuda":
        info["cuda"] = torch.version.cuda
    return info


def run_meta(command: str, device: torch.device | str, settings: dict, **fields) -> dict:
    """The ``meta`` block of a result: environment, the command, what was run and its ``settings``.

    ``settings`` holds everything that must match between files being compared or resumed."""
    return {**environment_info(device), "command": command, **fields, "settings": dict(settings)}
