"""The contenders of the side-by-side benchmark: adding one is one line in `CONTENDERS`.

Every contender is built from one shared `Workbench` (the base model loaded once, its tokenizer and
stop ids, the draft heads named on the command line, the tree settings), so all of them run on
the same weights in the same process.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from ..errors import ConfigError
from .engines import (PROMPT_LOOKUP_TOKENS, Engine, HFCompiledEngine, HFGenerateEngine, PlainEngine,
                      SpeculativeEngine)


@dataclass
class Workbench:
    """What contenders are built from; ``heads`` maps a contender name to its draft head path or alias."""

    base: nn.Module
    tokenizer: object
    stop_ids: set[int]
    total_token: int
    depth: int
    top_k_tree: int
    heads: dict[str, str] = field(default_factory=dict)

    def speculative(self, name: str, method: str | None = None, head: str | None = None,
                    **drafter_options) -> SpeculativeEngine:
        """An `EaModel` on the shared base with the head given for contender ``name`` (or for ``head``, when
        several contenders share one head, e.g. Jakiro* with its static and its dynamic tree)."""
        from ..model.ea_model import EaModel

        key = head or name
        check_head_given(key, self.heads)
        ea = EaModel.from_base_and_head(self.base, self.tokenizer, self.heads[key], total_token=self.total_token,
                                        depth=self.depth, top_k=self.top_k_tree, expect_method=method,
                                        role=f"contender {name!r}", **drafter_options)
        return SpeculativeEngine(ea, name)


HEAD_OPTIONS = {"jakiro": "--ea-model-path PATH", "eagle2": "--eagle-model-path PATH",
                "jakiro-star": "--star-model-path PATH"}


def check_head_given(name: str, heads: dict[str, str]) -> None:
    if not heads.get(name):
        hint = f" or {HEAD_OPTIONS[name]}" if name in HEAD_OPTIONS else ""
        raise ConfigError(f"contender {name!r} needs a draft head: pass --head {name}=PATH{hint}")


@dataclass(frozen=True)
class Contender:
    name: str
    label: str
    build: Callable[[Workbench], Engine]
    needs_head: bool = False
    head: str | None = None  # the --head NAME it reads, when not its own name

    @property
    def head_name(self) -> str:
        return self.head or self.name


CONTENDERS: dict[str, Contender] = {c.name: c for c in (
    Contender("hf", "HF generate", lambda w: HFGenerateEngine(w.base, w.stop_ids)),
    Contender("naive", "plain loop", lambda w: PlainEngine(w.base, w.stop_ids)),
    Contender("hf-pld", "HF prompt lookup", lambda w: HFGenerateEngine(w.base, w.stop_ids, PROMPT_LOOKUP_TOKENS)),
    Contender("hf-compiled", "HF generate, compiled", lambda w: HFCompiledEngine(w.base, w.stop_ids)),
    Contender("eagle2", "EAGLE-2 head", lambda w: w.speculative("eagle2", "eagle2"), needs_head=True),
    Contender("jakiro", "Jakiro", lambda w: w.speculative("jakiro", "jakiro"), needs_head=True),
    Contender("kangaroo", "Kangaroo", lambda w: w.speculative("kangaroo", "kangaroo"), needs_head=True),
    Contender("jakiro-star", "Jakiro* (static tree)",
              lambda w: w.speculative("jakiro-star", "jakiro_star", tree="static"), needs_head=True),
    Contender("jakiro-star-dynamic", "Jakiro* (dynamic tree)",
              lambda w: w.speculative("jakiro-star-dynamic", "jakiro_star", head="jakiro-star", tree="dynamic"),
              needs_head=True, head="jakiro-star"),
)}


def select_contenders(names: str | None, heads: dict[str, str]) -> list[Contender]:
    """Contenders by comma-separated names; by default every one that needs no head or has one given."""
    if names is None:
        return [c for c in CONTENDERS.values() if not c.needs_head or heads.get(c.head_name)]
    chosen = []
    for name in (n.strip() for n in names.split(",") if n.strip()):
        if name not in CONTENDERS:
            raise ConfigError(f"unknown contender {name!r}: use some of {', '.join(CONTENDERS)}")
        if name in (c.name for c in chosen):
            raise ConfigError(f"contender {name!r} is listed twice")
        chosen.append(CONTENDERS[name])
    if not chosen:
        raise ConfigError("--contenders names no contender")
    for contender in chosen:
        if contender.needs_head:
            check_head_given(contender.head_name, heads)
    return chosen
