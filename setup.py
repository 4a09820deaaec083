"""Packaging for jakiro (metadata here; build settings in pyproject.toml)."""

from pathlib import Path

from setuptools import find_namespace_packages, setup

here = Path(__file__).parent
version = {}
exec((here / "jakiro" / "version.py").read_text(), version)

setup(
    name="jakiro",
    version=version["__version__"],
    description="Lossless speculative decoding (Jakiro, Jakiro*, Kangaroo) on native transformers models",
    long_description=(here / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    # Data folders (question sets, shipped heads, training configs) are declared as packages too, each
    # with its own files, so setuptools neither drops them nor warns about importable folders it was not told of.
    packages=find_namespace_packages(include=["jakiro", "jakiro.*", "jakiro_star", "jakiro_star.*", "kangaroo",
                                              "kangaroo.*"], exclude=["*.__pycache__"]),
    package_data={"jakiro.data.mt_bench": ["question.jsonl"], "jakiro.data.spec_bench": ["question.jsonl"],
                  "jakiro.shipped_heads": ["*/*"], "jakiro.train.configs": ["*.json"], "jakiro.train": ["ds_config.json"],
                  "jakiro_star.train.configs": ["*.json"], "kangaroo.train.configs": ["*.json"],
                  "jakiro.model.csrc": ["*.cpp"]},
    include_package_data=False,
    install_requires=[line for line in (here / "requirements.txt").read_text().splitlines()
                      if line and not line.startswith("#")],
    extras_require={
        "test": ["pytest>=8", "scipy>=1.11", "playwright>=1.40"],
        "webui": ["gradio>=6"],
        "templates": ["fschat>=0.2.34"],
        "plot": ["matplotlib>=3.8"],
    },
)
