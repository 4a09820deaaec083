"""Sampling settings and the logits processing shared by drafting, verification and plain decoding.

Processing follows `transformers`' own warpers (temperature, then top-k, then top-p) so that a
speculative sample is distributed exactly as `generate(do_sample=True, ...)` with the same settings.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers.generation.logits_process import (LogitsProcessorList, TemperatureLogitsWarper,
                                                    TopKLogitsWarper, TopPLogitsWarper)

from ..errors import ConfigError


@dataclass(frozen=True)
class SamplingConfig:
    """``temperature == 0`` means greedy; ``top_p`` in (0, 1) and ``top_k`` > 0 enable those filters."""

    temperature: float = 0.0
    top_p: float = 0.0
    top_k: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.temperature, (int, float)) or self.temperature < 0 or self.temperature != self.temperature:
            raise ConfigError(f"temperature must be a number >= 0 (0 = greedy), got {self.temperature!r}")
        if not isinstance(self.top_p, (int, float)) or not 0.0 <= self.top_p <= 1.0:
            raise ConfigError(f"top_p must be in [0, 1] (0 or 1 = off), got {self.top_p!r}")
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 0:
            raise ConfigError(f"top_k must be an integer >= 0 (0 = off), got {self.top_k!r}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    def processor(self) -> LogitsProcessorList:
        warpers = LogitsProcessorList()
        if not self.greedy and self.temperature != 1.0:
            warpers.append(TemperatureLogitsWarper(float(self.temperature)))
        if self.top_k > 0:
            warpers.append(TopKLogitsWarper(self.top_k))
        if 0.0 < self.top_p < 1.0:
            warpers.append(TopPLogitsWarper(float(self.top_p)))
        return warpers

    def hf_generate_kwargs(self) -> dict:
        """The `generate` arguments that give the same distribution (for baselines and tests)."""
        if self.greedy:
            return {"do_sample": False}
        return {"do_sample": True, "temperature": float(self.temperature), "top_k": self.top_k,
                "top_p": float(self.top_p) if 0.0 < self.top_p < 1.0 else 1.0}


class TokenSampler:
    """Turns target logits into probabilities or a token under one `SamplingConfig`."""

    def __init__(self, config: SamplingConfig):
        self.config = config
        self._warpers = config.processor()

    @property
    def greedy(self) -> bool:
        return self.config.greedy

    def probs(self, logits: torch.Tensor) -> torch.Tensor:
        """Processed distribution for logits [..., V] (float32)."""
        logits = logits.float()
        flat = logits.reshape(-1, logits.shape[-1])
        flat = self._warpers(None, flat)
        return torch.softmax(flat, dim=-1).reshape(logits.shape)

    def sample(self, logits: torch.Tensor) -> int:
        """One token from logits [V]: argmax when greedy, otherwise a draw from the processed distribution."""
        if self.greedy:
            return int(logits.argmax())
        return int(torch.multinomial(self.probs(logits), 1))
