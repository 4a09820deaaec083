"""Training-time rollout (EAGLE-3's "training-time test", HASS's harmonized context): K batched forwards.

The pairing of methods.md §1.1: draft position p reads ``(f_p, x_{p+1})`` and predicts ``f_{p+1}``.

* Step 1 reads the base model's real features: the input at p is ``(f_p, x_{p+1})``, causal attention.
* Step j >= 2 reads the previous step's own prediction: the input at p is ``(h_{j-1}[p-1], x_{p+1})``
  (the tokens stay the real ones), and its output ``h_j[p]`` again predicts ``f_{p+1}``: every step at
  position p has the same target as step 1 at p.

Why these masks: at inference a draft path that starts after the accepted position s runs step j at
position ``p = s + j - 1`` (RoPE position p, as `TreeDrafter` does). It sees the cached real-feature KV
of positions ``0..s`` (the KV of position s is the path's own step 1) and the KV its own steps
``2..j`` wrote at positions ``s+1..s+j-1``. In the batched form every position p plays the path start
``s = p - j + 1`` for step j, so the query (step j, position p) attends to

    step-1 keys at positions ``q <= p - j + 1``   and   step-i keys (2 <= i <= j) at exactly ``q = p - j + i``

(the last one is its own key, so no row is ever fully masked). Queries with ``p < j - 1`` have no path
(s < 0): they are computed but carry no loss (`valid_positions`). Step j is one forward of the whole
sequence over the keys of steps 1..j concatenated (a ``[S, j*S]`` block mask), so K steps cost K
forwards of the sequence, never a loop over positions. Gradients flow through the fed-back features
and through the earlier steps' keys and values, as in EAGLE-3. Noise is added to step 1's real
features only (later steps read predictions).
"""

from __future__ import annotations

import torch


class StepKV:
    """A key/value store that concatenates each step's keys (the draft attention's ``cache.update`` API).

    Unlike `PreallocatedLayer` it never writes in place, so autograd can go through every step's keys."""

    def __init__(self) -> None:
        self.keys: torch.Tensor | None = None
        self.values: torch.Tensor | None = None
        self.length = 0

    def update(self, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.keys is None:
            self.keys, self.values = keys, values
        else:
            self.keys, self.values = torch.cat((self.keys, keys), dim=-2), torch.cat((self.values, values), dim=-2)
        self.length = self.keys.shape[-2]
        return self.keys, self.values

    def fork(self) -> "StepKV":
        """A store holding the same keys so far, which later steps extend without touching this one (a rollout that
        branches, as Jakiro*'s per-expert chains do)."""
        copy = StepKV()
        copy.keys, copy.values, copy.length = self.keys, self.values, self.length
        return copy


def shifted(prediction: torch.Tensor) -> torch.Tensor:
    """``prediction[:, p - 1]`` at position p (zeros at 0): the feature the next rollout step reads at p."""
    return torch.cat((torch.zeros_like(prediction[:, :1]), prediction[:, :-1]), dim=1)


def rollout_mask(length: int, step: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Boolean attention mask ``[1, 1, length, step * length]`` of rollout step ``step`` (1-based)."""
    p = torch.arange(length, device=device)[:, None]
    q = torch.arange(length, device=device)[None]
    blocks = [q <= p - step + 1] + [q == p - step + i for i in range(2, step + 1)]
    return torch.cat(blocks, dim=1)[None, None]


def valid_positions(length: int, step: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Float [length]: 1 where step ``step`` at position p belongs to a path (p >= step - 1)."""
    return (torch.arange(length, device=device) >= step - 1).float()


def unroll(model, features: torch.Tensor, input_ids: torch.Tensor, steps: int, contrastive: bool,
           read_out: str = "mix"):
    """Run ``steps`` rollout steps; return ``[(mix_j, contrastive_j or None) for j in 1..steps]``, each [B,S,H].

    ``features`` [B,S,H] and ``input_ids`` [B,S] are paired ``(f_p, x_{p+1})``. ``model`` may be wrapped
    (DDP / DeepSpeed): it is only called. With ``steps == 1`` this is exactly the plain causal forward.
    ``read_out`` names the branch fed back and returned in the ``mix`` slot when there is no contrastive branch
    (a head's ``chain_read_out``: Jakiro*'s drafted chain follows its dominant expert).
    """
    branches = "both" if contrastive else read_out

    def split(out):
        return out if contrastive else (out, None)

    if steps == 1:
        return [split(model(features, input_ids, branches=branches))]
    length = input_ids.shape[1]
    positions = torch.arange(length, device=input_ids.device)[None]
    cache, hidden, outputs = StepKV(), features, []
    for step in range(1, steps + 1):
        mix, right = split(model(hidden, input_ids, positions, rollout_mask(length, step, input_ids.device), cache,
                                 branches=branches))
        outputs.append((mix, right))
        hidden = shifted(mix)  # h_j[p-1] feeds position p
    return outputs
