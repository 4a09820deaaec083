"""Generation engines behind one interface, so every contender is timed and counted the same way.

* ``speculative``: an `EaModel` (Jakiro or the EAGLE-2 head) through ``eagenerate``;
* ``naive``: plain decoding on the library's own cache and forward (the loop the method replaces);
* ``hf`` / ``hf-pld``: `transformers` ``generate``, plain or with prompt lookup decoding: what a user
  would run without this library;
* ``hf-compiled``: ``generate`` with a static KV cache and a compiled forward (transformers' own fast path).

All of them stop by one rule: after the first stop id (inclusive) or at ``max_new_tokens`` new ids,
and all count generated token ids (never re-tokenised text).
"""

from __future__ import annotations

import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ConfigError
from ..model.generation import GenerationStats, PlainDecoder
from ..model.sampling import SamplingConfig, TokenSampler

PROMPT_LOOKUP_TOKENS = 10


@dataclass
class TurnResult:
    """One generation: the new ids (cut by the shared stop rule) and how long and how many rounds it took.

    ``rounds`` counts verification rounds (target forwards after the prefill); ``accept_lengths[r]`` is
    the number of tokens round r produced (accepted drafts + 1). Both are None where an engine cannot
    see them (`generate`)."""

    tokens: list[int]
    wall_time: float
    prompt_tokens: int
    rounds: int | None = None
    accept_lengths: list[int] | None = None
    prefill_time: float | None = None
    draft_time: float | None = None
    verify_time: float | None = None

    @classmethod
    def from_stats(cls, tokens: list[int], stats: GenerationStats) -> "TurnResult":
        if len(tokens) != stats.new_tokens:
            raise RuntimeError(f"engine returned {len(tokens)} ids but counted {stats.new_tokens}")
        return cls(tokens, stats.wall_time, stats.prompt_tokens, stats.rounds, list(stats.accept_lengths),
                   stats.prefill_time, stats.draft_time, stats.verify_time)


def cut_at_stop(tokens: list[int], stop_ids: set[int], max_new_tokens: int) -> list[int]:
    """The shared stop rule: keep ids up to and including the first stop id, at most ``max_new_tokens``."""
    kept = []
    for token in tokens[:max_new_tokens]:
        kept.append(token)
        if token in stop_ids:
            break
    return kept


def _now(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def model_device(model: nn.Module) -> torch.device:
    return model.get_output_embeddings().weight.device


class Engine:
    """A way to generate one answer turn from prompt ids."""

    name = "engine"

    def __init__(self, base_model: nn.Module, stop_ids: set[int]):
        self.base_model, self.stop_ids = base_model, set(stop_ids)

    @property
    def device(self) -> torch.device:
        return model_device(self.base_model)

    def generate(self, prompt: list[int], sampling: SamplingConfig, max_new_tokens: int) -> TurnResult:
        raise NotImplementedError

    def settings(self) -> dict:
        """Engine-specific settings recorded in result files."""
        return {"engine": self.name}

    def reset_statistics(self) -> None:
        """Forget what was counted so far (e.g. during warm-up), so reports cover the timed answers only."""


class SpeculativeEngine(Engine):
    """An `EaModel` (draft head + base) through its speculative loop."""

    name = "speculative"

    def __init__(self, ea_model, name: str | None = None):
        super().__init__(ea_model.base_model, ea_model.stop_ids)
        self.ea_model = ea_model
        self.name = name or getattr(ea_model.ea_layer.config, "method", "speculative")

    def generate(self, prompt: list[int], sampling: SamplingConfig, max_new_tokens: int) -> TurnResult:
        ea = self.ea_model
        ids = torch.tensor([prompt], dtype=torch.long)
        out = ea.eagenerate(ids, sampling.temperature, sampling.top_p, sampling.top_k, max_new_tokens)
        return TurnResult.from_stats(out[0, len(prompt):].tolist(), ea.last_stats)

    @property
    def max_path_drafts(self) -> int | None:
        """Deepest draft token a round can accept (tree levels below the root), for per-depth α."""
        return self.ea_model.drafter.max_path_drafts

    def settings(self) -> dict:
        ea = self.ea_model
        return {"engine": self.name, "total_token": ea.total_token, "depth": ea.depth, "top_k_tree": ea.top_k,
                "max_path_drafts": self.max_path_drafts, **ea.drafter.settings()}

    def reset_statistics(self) -> None:
        """The drafter's statistics (e.g. Jakiro*'s expert mixing, Kangaroo's drafted tokens per round)."""
        self.ea_model.drafter.reset_statistics()


class PlainEngine(Engine):
    """Token-by-token decoding with the library's cache and stop rule (what ``naive_generate`` runs)."""

    name = "naive"

    def __init__(self, base_model: nn.Module, stop_ids: set[int]):
        super().__init__(base_model, stop_ids)
        self._decoder = PlainDecoder(base_model, stop_ids)

    def generate(self, prompt: list[int], sampling: SamplingConfig, max_new_tokens: int) -> TurnResult:
        stats = GenerationStats()
        tokens: list[int] = []
        for new in self._decoder.stream(torch.tensor([prompt], dtype=torch.long), TokenSampler(sampling),
                                        max_new_tokens, None, stats):
            tokens.extend(new)
        return TurnResult.from_stats(tokens, stats)


@contextmanager
def neutral_generation_config(model: nn.Module):
    """Hide the model's own generation defaults (e.g. a shipped temperature or repetition penalty) for a call.

    `generate` fills every unset option from ``model.generation_config``; a baseline must run exactly
    the settings the method runs, so the defaults are swapped for the library-wide ones meanwhile."""
    from transformers import GenerationConfig

    saved = getattr(model, "generation_config", None)
    model.generation_config = GenerationConfig()
    try:
        yield
    finally:
        model.generation_config = saved


class HFGenerateEngine(Engine):
    """`transformers` ``generate``; with ``prompt_lookup_num_tokens`` it is HF prompt lookup decoding."""

    def __init__(self, base_model: nn.Module, stop_ids: set[int], prompt_lookup_num_tokens: int | None = None):
        super().__init__(base_model, stop_ids)
        self.prompt_lookup_num_tokens = prompt_lookup_num_tokens
        self.name = "hf-pld" if prompt_lookup_num_tokens else "hf"

    def generate(self, prompt: list[int], sampling: SamplingConfig, max_new_tokens: int) -> TurnResult:
        if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")
        device = self.device
        ids = torch.tensor([prompt], dtype=torch.long, device=device)
        stops = sorted(self.stop_ids)
        options = dict(sampling.hf_generate_kwargs(), max_new_tokens=max_new_tokens,
                       eos_token_id=stops or None, pad_token_id=stops[0] if stops else 0)
        if self.prompt_lookup_num_tokens:
            options["prompt_lookup_num_tokens"] = self.prompt_lookup_num_tokens
        options.update(self.extra_options())
        with neutral_generation_config(self.base_model), torch.no_grad(), self.running():
            begin = _now(device)
            out = self.base_model.generate(ids, attention_mask=torch.ones_like(ids), **options)
            wall = _now(device) - begin
        tokens = cut_at_stop(out[0, len(prompt):].tolist(), self.stop_ids, max_new_tokens)
        return TurnResult(tokens, wall, len(prompt))

    def extra_options(self) -> dict:
        """More ``generate`` options of a variant (the compiled baseline's static cache)."""
        return {}

    def running(self):
        """Context around the timed ``generate`` call (the compiled baseline swaps its forward in)."""
        return nullcontext()

    def settings(self) -> dict:
        return {"engine": self.name, "prompt_lookup_num_tokens": self.prompt_lookup_num_tokens}


class HFCompiledEngine(HFGenerateEngine):
    """`generate` with a static KV cache and a `torch.compile`d forward (`compiled`): transformers' own fast path."""

    def __init__(self, base_model: nn.Module, stop_ids: set[int]):
        from .compiled import CompiledForward

        super().__init__(base_model, stop_ids)
        self.name = "hf-compiled"
        self.compiled = CompiledForward(base_model)

    def extra_options(self) -> dict:
        return {"cache_implementation": "static"}

    def running(self):
        return self.compiled.swapped()

    def settings(self) -> dict:
        from .compiled import compile_cache_dir

        return {"engine": self.name, "cache_implementation": "static", "compile_mode": self.compiled.mode,
                "compile_fullgraph": self.compiled.fullgraph, "compile_dynamic": self.compiled.dynamic,
                "compile_cache": str(compile_cache_dir())}


BASELINE_ENGINES = ("naive", "hf", "hf-pld", "hf-compiled")


def baseline_engine(name: str, base_model: nn.Module, stop_ids: set[int]) -> Engine:
    """A baseline engine by its CLI name."""
    if name == "naive":
        return PlainEngine(base_model, stop_ids)
    if name == "hf":
        return HFGenerateEngine(base_model, stop_ids)
    if name == "hf-pld":
        return HFGenerateEngine(base_model, stop_ids, PROMPT_LOOKUP_TOKENS)
    if name == "hf-compiled":
        return HFCompiledEngine(base_model, stop_ids)
    raise ConfigError(f"unknown baseline engine {name!r}: use one of {', '.join(BASELINE_ENGINES)}")
