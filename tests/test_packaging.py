"""Packaging: a build is quiet (no setuptools warnings) and the wheel holds the package's data files."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("setup.py", "pyproject.toml", "README.md", "requirements.txt", "jakiro", "jakiro_star", "kangaroo")
DATA_FILES = ("jakiro/data/mt_bench/question.jsonl", "jakiro/data/spec_bench/question.jsonl",
              "jakiro/train/ds_config.json", "jakiro/train/configs/smollm2-135m.json",
              "jakiro_star/train/configs/smollm2-135m.json",
              "jakiro/shipped_heads/jakiro-smollm2-135m-instruct/model.safetensors",
              "jakiro/shipped_heads/eagle2-smollm2-135m-instruct/config.json",
              "jakiro/shipped_heads/jakiro-star-smollm2-135m-instruct/model.safetensors",
              "jakiro/shipped_heads/kangaroo-smollm2-135m-instruct/config.json",
              "jakiro/model/csrc/panel_gemm.cpp")
BUILD = ("from setuptools import build_meta; import sys; "
         "print(build_meta.build_wheel(sys.argv[1])); print(build_meta.build_editable(sys.argv[1]))")


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    """Build a wheel and an editable wheel from a copy of the sources (the checkout stays untouched)."""
    source, wheels = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("wheels")
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(ROOT / name, source / name)
    result = subprocess.run([sys.executable, "-c", BUILD, str(wheels)], cwd=source, capture_output=True, text=True,
                            timeout=600, env={"PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout + result.stderr, wheels


def test_build_prints_no_setuptools_warnings(build):
    output, _ = build
    noisy = [line for line in output.splitlines()
             if "warn" in line.lower() and "byte-compiling is disabled" not in line]
    assert not noisy, "\n".join(noisy[:20])
    assert "absent from the `packages` configuration" not in output


def test_wheel_holds_code_and_data_files(build):
    _, wheels = build
    [wheel] = [p for p in wheels.glob("jakiro-*.whl") if "editable" not in p.name]
    names = set(zipfile.ZipFile(wheel).namelist())
    assert set(DATA_FILES) <= names
    assert {"jakiro/__init__.py", "jakiro/model/ea_model.py", "jakiro_star/__init__.py", "kangaroo/__init__.py"} <= names
    assert not [n for n in names if "__pycache__" in n or n.startswith("tests/")]


def test_requirements_name_what_original_checkpoints_need():
    requirements = (ROOT / "requirements.txt").read_text()
    assert "sentencepiece" in requirements and "protobuf" in requirements  # Vicuna / LLaMA tokenizer.model
    assert "fschat" in (ROOT / "scripts" / "setup.sh").read_text()  # FastChat templates for the tests and users
