"""The panel kernel (``csrc/panel_gemm.cpp``): fp32 products of a few rows by a big weight at streaming speed.

MKL's sgemm with pre-packed weights still reads an 8-row product's weights at about half the speed of
its one-row gemv; this small C++ kernel reads a few weight panels side by side and keeps every row's
sums in registers, so 8 rows cost little more than one (see the source for the layout). It is built
once per machine with the system's C++ compiler through `torch.utils.cpp_extension` (``-march=native``)
into ``$JAKIRO_HOME/extensions``, so later starts load it in a moment; the first build says so on
stderr. Where it cannot be built (no compiler, not x86), `load` returns None and callers fall back to
MKL's packed weights.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import sys
import threading
from pathlib import Path

import torch

SOURCE = Path(__file__).with_name("csrc") / "panel_gemm.cpp"
SOURCES = (SOURCE, SOURCE.with_name("fused_layer.cpp"))  # one extension: the products and the fused layer
FLAGS = ("-O3", "-march=native", "-mprefer-vector-width=512", "-fno-math-errno")
# ATen's `parallel_for` is inline OpenMP: compiled without it, the kernel silently runs on one thread
# (measured: an 8-row product of the whole model took 45.6 ms on 2 threads without it, 26.6 with it)
OPENMP = ("-fopenmp",)

_lock = threading.Lock()
_state: dict = {}


def _cpu_flags() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("flags"):
                return line
    return platform.processor() or platform.machine()


def build_name() -> str:
    """A name unique to the source, flags, torch/Python version and CPU: a changed one builds anew."""
    digest = hashlib.sha256()
    sources = tuple(source.read_bytes() for source in SOURCES)
    for part in (*sources, " ".join(FLAGS + OPENMP).encode(), torch.__version__.encode(),
                 sys.version.split()[0].encode(), _cpu_flags().encode()):
        digest.update(part)
    return f"jakiro_panel_gemm_{digest.hexdigest()[:12]}"


def build_dir() -> Path:
    from ..base_models import jakiro_home

    return jakiro_home() / "extensions" / build_name()


def load(verbose: bool = True):
    """The compiled module (``pack_panels``, ``panel_linear``, ``panel_width``), or None where it cannot be built.

    Loading is attempted once per process; a failure is reported in one line and remembered."""
    with _lock:
        if "module" in _state:
            return _state["module"]
        _state["module"] = None
        if platform.machine().lower() not in ("x86_64", "amd64") or not all(source.is_file() for source in SOURCES):
            _state["error"] = "the panel kernel is built for x86-64 only"
            return None
        folder = build_dir()
        fresh = not any(folder.glob("*.so")) if folder.is_dir() else True
        if fresh and verbose:
            print(f"jakiro: building the fast verification kernel (first start on this machine only, about a "
                  f"minute) into {folder}", file=sys.stderr, flush=True)
        try:
            from torch.utils.cpp_extension import load as load_extension

            _ninja_on_path()
            folder.mkdir(parents=True, exist_ok=True)
            _state["module"] = load_extension(build_name(), sources=[str(source) for source in SOURCES], extra_cflags=list(FLAGS + OPENMP),
                                              extra_ldflags=list(OPENMP),
                                              build_directory=str(folder), verbose=False)
        except Exception as err:  # no compiler, no ninja, a build error: the MKL path still works
            _state["error"] = f"{type(err).__name__}: {str(err).strip().splitlines()[-1] if str(err).strip() else ''}"
            if verbose:
                print(f"jakiro: the fast verification kernel could not be built ({_state['error']}); "
                      "using MKL's packed weights instead", file=sys.stderr, flush=True)
        return _state["module"]


def _ninja_on_path() -> None:
    """`torch.utils.cpp_extension` runs ``ninja`` from PATH; the pip package puts it beside this Python,
    which is not on PATH when the environment was not activated (``.venv/bin/python -m ...``)."""
    here = Path(sys.executable).parent
    if shutil.which("ninja") is None and (here / "ninja").is_file():
        os.environ["PATH"] = f"{here}{os.pathsep}{os.environ.get('PATH', '')}"


def load_error() -> str | None:
    """Why `load` returned None (None if it was not tried or succeeded)."""
    return _state.get("error")
