"""`EaModel`: a base causal LM from `transformers` plus a draft head, with lossless speculative decoding."""

from __future__ import annotations

import os
from collections.abc import Iterator

import torch
from torch import nn

from ..base_models import load_base_model
from ..errors import ConfigError
from .budget import CANDIDATE_BUDGETS, BudgetChoice, choose_budget, head_tau_curve
from .drafter import Drafter
from .generation import (GenerationStats, PlainDecoder, check_prompt, check_tree_options, plan_capacity,
                         speculative_stream, vocab_size)
from .sampling import SamplingConfig, TokenSampler
from .fast_verify import fast_verify_supported
from .target import TargetRunner


def stop_token_ids(model: nn.Module) -> set[int]:
    """The ids `generate` would stop on: the generation config's EOS (one or several), else the config's."""
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if eos is None:
        eos = getattr(model.config, "eos_token_id", None)
    if eos is None:
        return set()
    return {int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos])}


class EaModel(nn.Module):
    """Base model + draft head. ``total_token`` counts the root; ``-1`` picks the budget that maximises this
    head's τ per round cost on this device, and with it the depth, ``depth`` being then the deepest tree
    considered (`jakiro.model.budget`; the choice is in ``budget_choice``)."""

    def __init__(self, base_model: nn.Module, ea_layer: nn.Module, tokenizer=None, total_token: int = 60,
                 depth: int = 5, top_k: int = 10, fast_verify: bool | None = None, **drafter_options):
        """``drafter_options`` go to the head's method's drafter (Jakiro: ``cepd``, ``legacy_cepd_alignment``;
        Jakiro*: ``tree``, ``tree_choices``); None means the method's default.

        ``fast_verify`` (None = where supported: fp32 on a CPU with MKL) verifies every tree padded to
        the tree budget with weights packed once for that row count (`jakiro.model.fast_verify`)."""
        super().__init__()
        check_tree_options(total_token=total_token, depth=depth, top_k=top_k)
        self.base_model = base_model
        self.ea_layer = ea_layer
        self.tokenizer = tokenizer
        self.depth, self.top_k = depth, top_k
        self.drafter_options = {k: v for k, v in drafter_options.items() if v is not None}
        self.fast_verify = fast_verify is not False and fast_verify_supported(base_model)
        if fast_verify and not self.fast_verify:
            raise ConfigError("fast_verify=True needs an fp32 model on CPU and a torch build with MKL: "
                              "pass fast_verify=None (use it where supported) or False")
        self.budget_timings: dict[int, float] = {}
        self.budget_choice: BudgetChoice | None = None  # what total_token=-1 chose from (τ and costs by budget)
        self.stop_ids = stop_token_ids(base_model)
        self._target = TargetRunner(base_model)
        self.total_token = max(CANDIDATE_BUDGETS) if total_token == -1 else total_token
        self.drafter = self.make_drafter()
        if total_token == -1:  # measure this head's acceptance and this device's costs, then rebuild the drafter
            self.budget_choice = choose_budget(self, tau_curve=head_tau_curve(getattr(ea_layer, "source_folder", None)))
            self.total_token, self.budget_timings = self.budget_choice.total_token, self.budget_choice.timings
            self.depth = self.budget_choice.depth or self.depth
            self.drafter = self.make_drafter()
        if self.fast_verify:
            self._target.use_fast_verify(self.drafter.max_tree_tokens or self.total_token)
        self._plain = PlainDecoder(base_model, self.stop_ids, self._target)
        self.last_stats = GenerationStats()

    # -- construction --------------------------------------------------------------------------
    @property
    def method(self) -> str:
        """The head's method (``config.json``'s ``method``): it chose the drafter."""
        return self.ea_layer.config.method

    def make_drafter(self) -> Drafter:
        """The drafter the method registry (`jakiro.methods`) names for this head's method."""
        from ..methods import make_drafter

        return make_drafter(self)

    @classmethod
    def from_pretrained(cls, base_model_path: str | os.PathLike = "smollm2-135m-instruct",
                        ea_model_path: str | os.PathLike | None = None, total_token: int = 60, depth: int = 5,
                        top_k: int = 10, torch_dtype: str | torch.dtype | None = None, device_map: str | None = None,
                        **options) -> "EaModel":
        """Load a base model (path or alias) and a draft head folder (or a shipped head's alias).

        The head's own ``config.json`` names its method (Jakiro, EAGLE-2, Jakiro*, ...), which picks the head
        class and the drafter; ``options`` are ``expect_method``/``role`` (see `from_base_and_head`) or drafter
        options of that method."""
        if ea_model_path is None:
            raise ConfigError("ea_model_path is required: pass a draft head folder or a shipped head alias")
        from ..heads import resolve_head_path

        resolve_head_path(ea_model_path)  # a missing head fails before the (slow) base model load
        base, tokenizer = load_base_model(base_model_path, torch_dtype=torch_dtype, device_map=device_map)
        return cls.from_base_and_head(base, tokenizer, ea_model_path, total_token=total_token, depth=depth,
                                      top_k=top_k, **options)

    @classmethod
    def from_base_and_head(cls, base_model: nn.Module, tokenizer, ea_model_path: str | os.PathLike,
                           total_token: int = 60, depth: int = 5, top_k: int = 10, expect_method: str | None = None,
                           role: str = "this model", **options) -> "EaModel":
        """Attach a saved head to an already loaded base model (several heads can share one base).

        ``expect_method`` refuses a head of another method; ``role`` names who expected it in that error."""
        from ..heads import resolve_head_path
        from ..methods import check_method, head_method, load_head

        folder = resolve_head_path(ea_model_path)
        check_method(head_method(folder), expect_method, ea_model_path, role)  # before any weights are read
        head = load_head(folder, base_model=base_model)
        head.source_folder = folder  # where total_token=-1 looks for the head's measured τ by tree size
        head.to(device=base_model.get_output_embeddings().weight.device, dtype=base_model.dtype)
        head.eval()
        return cls(base_model, head, tokenizer, total_token=total_token, depth=depth, top_k=top_k, **options)

    @classmethod
    def from_base_model(cls, base_model: nn.Module, tokenizer=None, total_token: int = 60, depth: int = 5,
                        top_k: int = 10, seed: int | None = None, **options) -> "EaModel":
        """Wrap a loaded base model with a randomly initialised head (tests, training from scratch).

        ``options`` that are fields of the method's head config shape the head (``method="jakiro_star"``,
        ``num_experts=1``, ``method="kangaroo", exit_layer=2``, ...); the others are drafter options of its
        method (``cepd``, ``tree``, ``threshold``, ...)."""
        from ..methods import head_config, new_head

        config, drafter_options = head_config(base_model.config, options)
        if seed is not None:
            torch.manual_seed(seed)
        head = new_head(config, base_model)
        head.to(device=base_model.get_output_embeddings().weight.device, dtype=base_model.dtype)
        head.eval()
        return cls(base_model, head, tokenizer, total_token=total_token, depth=depth, top_k=top_k,
                   **drafter_options)

    def get_tokenizer(self):
        return self.tokenizer

    @property
    def context_length(self) -> int:
        return int(getattr(self.base_model.config, "max_position_embeddings", 2048))

    # -- generation ----------------------------------------------------------------------------
    def _setup(self, input_ids, temperature, top_p, top_k, max_new_tokens, max_length, tree_tokens):
        sampler = TokenSampler(SamplingConfig(temperature, top_p, top_k))
        input_ids = check_prompt(input_ids, vocab_size(self.base_model))
        limit = self.context_length if max_length is None else int(max_length)
        capacity = plan_capacity(input_ids.shape[1], max_new_tokens, tree_tokens, limit)
        self.last_stats = GenerationStats()
        return input_ids, sampler, capacity

    def ea_generate(self, input_ids: torch.Tensor, temperature: float = 0.0, top_p: float = 0.0, top_k: int = 0,
                    max_new_tokens: int = 512, max_length: int | None = None) -> Iterator[torch.Tensor]:
        """Speculative decoding, yielding prompt + new ids after every round (for streaming UIs).

        ``self.last_stats`` is updated as it goes (rounds, accepted lengths, timings)."""
        input_ids, sampler, capacity = self._setup(input_ids, temperature, top_p, top_k, max_new_tokens,
                                                   max_length, self.drafter.max_tree_tokens or self.total_token)
        tokens: list[int] = []
        for new in speculative_stream(self._target, self.drafter, input_ids, sampler, max_new_tokens, capacity,
                                      self.stop_ids, self.last_stats):
            tokens.extend(new)
            yield self._join(input_ids, tokens)

    def naive_generate(self, input_ids: torch.Tensor, temperature: float = 0.0, top_p: float = 0.0, top_k: int = 0,
                       max_new_tokens: int = 512, max_length: int | None = None) -> Iterator[torch.Tensor]:
        """Plain decoding with the same cache and stopping rules, yielding after every token."""
        sampler = TokenSampler(SamplingConfig(temperature, top_p, top_k))
        input_ids = check_prompt(input_ids)
        self.last_stats = GenerationStats()
        tokens: list[int] = []
        for new in self._plain.stream(input_ids, sampler, max_new_tokens, max_length, self.last_stats):
            tokens.extend(new)
            yield self._join(input_ids, tokens)

    @staticmethod
    def _join(input_ids: torch.Tensor, tokens: list[int]) -> torch.Tensor:
        return torch.cat((input_ids.cpu(), torch.tensor([tokens], dtype=torch.long)), dim=1)

    def eagenerate(self, input_ids: torch.Tensor, temperature: float = 0.0, top_p: float = 0.0, top_k: int = 0,
                   max_new_tokens: int = 512, max_length: int | None = None, log: bool = False):
        """Prompt + new ids; with ``log=True`` returns ``(ids, new_tokens, rounds)``."""
        ids = None
        for ids in self.ea_generate(input_ids, temperature, top_p, top_k, max_new_tokens, max_length):
            pass
        return (ids, self.last_stats.new_tokens, self.last_stats.rounds) if log else ids

    def naivegenerate(self, input_ids: torch.Tensor, temperature: float = 0.0, top_p: float = 0.0, top_k: int = 0,
                      max_new_tokens: int = 512, max_length: int | None = None, log: bool = False):
        """Plain decoding; same return convention as `eagenerate`."""
        ids = None
        for ids in self.naive_generate(input_ids, temperature, top_p, top_k, max_new_tokens, max_length):
            pass
        return (ids, self.last_stats.new_tokens, self.last_stats.rounds) if log else ids
