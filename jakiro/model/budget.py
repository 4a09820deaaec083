"""Choose the tree budget (``total_token=-1``) by timing the target on the current device.

A bigger tree accepts more tokens but costs a longer verification forward. With no trained
acceptance curve at hand, the expected gain of a tree of N nodes is modelled as ``N ** 0.3``
(EAGLE's hand-set factors 1, 1.05, 1.07, 1.1, 1.13 for 40..60 nodes follow this curve), and the
budget minimising ``forward_time(N) / gain(N)`` wins.
"""

from __future__ import annotations

import time

import torch

from .kv_cache import TreeKVCache

CANDIDATE_BUDGETS = (4, 8, 12, 16, 24, 32, 48, 60)


@torch.no_grad()
def time_forward(model, size: int, prefix: int = 64, repeats: int = 5) -> float:
    """Median seconds of one target forward over ``size`` tokens after a ``prefix``-token cache."""
    device = model.get_output_embeddings().weight.device
    vocab = model.config.vocab_size
    cache = TreeKVCache(model.config.num_hidden_layers, prefix + size)
    decoder = model.get_decoder()
    decoder(input_ids=torch.randint(vocab, (1, prefix), device=device), past_key_values=cache, use_cache=True)
    times = []
    for _ in range(repeats + 1):
        cache.crop(prefix)
        ids = torch.randint(vocab, (1, size), device=device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        begin = time.perf_counter()
        out = decoder(input_ids=ids, past_key_values=cache, use_cache=True)
        model.get_output_embeddings()(out.last_hidden_state)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - begin)
    return sorted(times[1:])[len(times[1:]) // 2]


def choose_total_token(model, candidates: tuple[int, ...] = CANDIDATE_BUDGETS) -> tuple[int, dict[int, float]]:
    """Return the chosen budget and the measured seconds per candidate."""
    timings = {size: time_forward(model, size) for size in candidates}
    best = min(candidates, key=lambda size: timings[size] / size ** 0.3)
    return best, timings
