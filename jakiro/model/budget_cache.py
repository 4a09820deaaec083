"""The tree budget chooser's measurements kept on disk, so only the first start on a machine pays for them.

``total_token=-1`` times a forward cost table and runs a short calibration (`jakiro.model.budget`): about
20 s on a small CPU, on every start of the CLI, the web UI or ``compare``. Both results depend only on
what was loaded and where, so they are stored as JSON under ``$JAKIRO_HOME/budget-cache`` and reused
while everything that changes them is the same:

* the cost table: the base model's architecture (`base_fingerprint`), dtype, device (GPU name or CPU
  model), torch version, thread count (``torch.get_num_threads()``), the fast verification forward on
  or off and its kernel (panels build or MKL), the candidate budgets and the library version;
* the calibration (τ per budget, drafting and bookkeeping seconds per round): the same machine facts plus
  the base and head folders' contents (config and weight files' sizes and times), the head's method,
  the drafter's options, the tokenizer and the calibration prompts. A base or head that was not loaded
  from a folder has no identity on disk: its calibration runs every time.

``JAKIRO_BUDGET_CACHE=0`` (or ``off``/``false``/``no``) measures every time and stores nothing;
``JAKIRO_BUDGET_CACHE=/some/folder`` keeps the cache there instead. Files are written atomically; one
that cannot be read is ignored with a one-line note and measured again.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import tempfile
from datetime import datetime
from pathlib import Path

import torch
from torch import nn

from ..version import __version__
from .configs import base_fingerprint
from .cost import CostTable, ForwardCost

ENV = "JAKIRO_BUDGET_CACHE"
FORMAT = 1
_OFF = ("0", "off", "false", "no")
_ON = ("", "1", "on", "true", "yes")


def cache_dir() -> Path | None:
    """Where the cache lives, or None when ``JAKIRO_BUDGET_CACHE`` switches it off."""
    value = os.environ.get(ENV, "").strip()
    if value.lower() in _OFF:
        return None
    if value.lower() in _ON:
        from ..base_models import jakiro_home

        return jakiro_home() / "budget-cache"
    return Path(value).expanduser()


# -- what the results depend on ------------------------------------------------------------------
def _cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    try:
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_key(model: nn.Module) -> dict:
    """The device and software facts every timing depends on."""
    weight = model.get_output_embeddings().weight
    device = weight.device
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_model()
    return {"device": str(device.type), "device_name": name, "machine": platform.machine(),
            "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(), "dtype": str(weight.dtype),
            "torch": torch.__version__, "jakiro": __version__}


def kernel_name(model: nn.Module, fast: bool) -> str:
    """Which products the fast forward runs on (the panel kernel, by its build, with or without the fused
    layers, or MKL); "plain" without it."""
    if not fast:
        return "plain"
    from .fast_verify import fast_verify_supported, shared_packed_linears

    if not fast_verify_supported(model):
        return "plain"
    backend = shared_packed_linears(model).backend  # loads (or builds, first time) the kernel it will use anyway
    if backend == "panels":
        from .fused_decoder import fused_layers_apply
        from .panel_gemm import build_name

        layers = "fused" if fused_layers_apply(model) else "modules"
        return f"panels:{build_name()}:{layers}"
    return backend


def cost_key(model: nn.Module, candidates, fast: bool, repeats: int, prefix: int) -> dict:
    """Everything the forward cost table of ``candidates`` depends on."""
    return {"kind": "costs", **machine_key(model), "base_fingerprint": base_fingerprint(model.config),
            "fast": bool(fast), "kernel": kernel_name(model, fast),
            "candidates": sorted(int(c) for c in candidates), "repeats": repeats, "prefix": prefix}


def folder_signature(folder: str | os.PathLike | None) -> str | None:
    """A hash of a model folder's ``config.json`` and of its files' names, sizes and modification times
    (weights are not read); None where there is no such folder."""
    if folder is None or not str(folder):
        return None
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        return None
    digest = hashlib.sha256()
    try:
        digest.update((folder / "config.json").read_bytes())
        for path in sorted(folder.iterdir()):
            if path.name.startswith(".") or path.suffix == ".md" or not path.is_file():
                continue
            stat = path.stat()
            digest.update(f"{path.name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    except OSError:
        return None
    return digest.hexdigest()[:24]


def base_folder(model: nn.Module) -> Path | None:
    """The folder the base model was loaded from (``config.name_or_path``; the alias names its converted copy)."""
    from ..base_models import DEFAULT_BASE_MODEL, jakiro_home

    name = str(getattr(model.config, "name_or_path", "") or "")
    if not name:
        return None
    if name.lower() == DEFAULT_BASE_MODEL:
        return jakiro_home() / "models" / DEFAULT_BASE_MODEL
    return Path(name)


def _plain(value):
    """Drafter options as JSON values (dtypes, tuples and other objects by their text)."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def calibration_key(ea, candidates, prompts, max_new_tokens: int, depth: int | None = None) -> dict | None:
    """Everything the calibration depends on, or None where the base or head has no folder to identify it."""
    base_sig = folder_signature(base_folder(ea.base_model))
    head_sig = folder_signature(getattr(ea.ea_layer, "source_folder", None))
    if base_sig is None or head_sig is None:
        return None
    drafter = ea.drafter
    tokenizer = ea.tokenizer
    return {"kind": "calibration", **machine_key(ea.base_model),
            "base_fingerprint": base_fingerprint(ea.base_model.config), "base_folder": base_sig,
            "head_folder": head_sig, "method": str(getattr(ea.ea_layer.config, "method", "")),
            "head_class": type(ea.ea_layer).__name__, "drafter": type(drafter).__name__,
            "depth": ea.depth if depth is None else depth, "top_k": ea.top_k, "drafter_options": _plain(ea.drafter_options),
            "draft_dtype": str(getattr(drafter, "draft_dtype", "")),
            "tokenizer": [type(tokenizer).__name__, len(tokenizer) if tokenizer is not None else 0],
            "stop_ids": sorted(int(i) for i in (ea.stop_ids or ())),
            "candidates": sorted(int(c) for c in candidates), "prompts": list(prompts),
            "max_new_tokens": max_new_tokens}


# -- reading and writing -------------------------------------------------------------------------
def _path(folder: Path, key: dict) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return folder / f"{key['kind']}-{digest}.json"


def _note(message: str) -> None:
    print(f"jakiro: {message}", file=sys.stderr, flush=True)


def load(key: dict | None):
    """``(value, measured_at)`` stored under ``key``, or None (no cache, no entry, or an unreadable file)."""
    folder = cache_dir()
    if folder is None or key is None:
        return None
    path = _path(folder, key)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict) or data.get("format") != FORMAT or "value" not in data:
            raise ValueError("not a tree budget cache entry")
        if data.get("key") != key:
            return None  # another key with the same file name: measured anew and overwritten
        measured = datetime.fromisoformat(str(data["measured_at"])).astimezone()
        value = _decode[key["kind"]](data["value"])
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as err:
        _note(f"ignoring the unreadable tree budget cache {path} ({type(err).__name__}: "
              f"{str(err).strip().splitlines()[0] if str(err).strip() else 'no detail'}); measuring again")
        return None
    return value, measured


def store(key: dict | None, value) -> None:
    """Write ``value`` under ``key`` atomically (temp file, then rename); a failure is one note, never an error."""
    folder = cache_dir()
    if folder is None or key is None:
        return
    path = _path(folder, key)
    data = {"format": FORMAT, "key": key, "measured_at": datetime.now().astimezone().isoformat(timespec="seconds"),
            "value": _encode[key["kind"]](value)}
    tmp = None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".tmp", dir=folder)
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=1, sort_keys=True)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the entry from other users of a shared home
        os.replace(tmp, path)
        tmp = None
    except OSError as err:
        _note(f"could not write the tree budget cache {path} ({err.strerror or err}); it is measured again next start")
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def _table_from(value) -> CostTable:
    table = CostTable(prefix=int(value["prefix"]), repeats=int(value["repeats"]),
                      entries=[ForwardCost(**entry) for entry in value["entries"]])
    if not table.entries:
        raise ValueError("the cost table has no entries")
    return table


def _calibration_to(value: dict | None):
    if value is None:
        return None
    return {**value, "tau": {str(n): t for n, t in value["tau"].items()}}


def _calibration_from(value) -> dict | None:
    if value is None:
        return None
    return {"tau": {int(n): float(t) for n, t in value["tau"].items()}, "draft_s": float(value["draft_s"]),
            "bookkeeping_s": float(value["bookkeeping_s"]), "rounds": int(value["rounds"])}


_encode = {"costs": lambda table: table.as_dict(), "calibration": _calibration_to}
_decode = {"costs": _table_from, "calibration": _calibration_from}


def when(measured: datetime) -> str:
    """The measurement time as the start-up note shows it."""
    return measured.strftime("%Y-%m-%d %H:%M")
