"""Kangaroo sampling through `eagenerate` is distributed exactly as the target (chi-square), chain and tree."""

from __future__ import annotations

import pytest
import torch

from tests.kangaroo.helpers import make_kangaroo
from tests.model.test_sampling import VOCAB, exact_joint
from tests.utils import build_base, chi_square_pvalue, sample_new_tokens

PROMPT = torch.tensor([[3, 1, 4, 1, 5]])
# (tree levels, setting): the chain and the tree, each under plain sampling and a truncating filter
CASES = [(0, dict(temperature=1.0)), (0, dict(temperature=0.7, top_p=0.8)),
         (2, dict(temperature=1.0)), (2, dict(temperature=0.7, top_k=5))]


@pytest.fixture(scope="module")
def small_vocab_base():
    # peaked, context-dependent distributions over 16 tokens; layers that change the stream only a little,
    # so the oracle adapter's drafts (after the first of two layers) are often the base's likely tokens
    return build_base("llama", vocab=VOCAB, seed=5, logit_scale=10.0, context_mix=0.2, layers=2)


@pytest.mark.parametrize("tree_levels,setting", CASES,
                         ids=[("tree-" if t else "chain-") + "-".join(f"{k}={v}" for k, v in s.items())
                              for t, s in CASES])
def test_eagenerate_sampling_is_lossless(small_vocab_base, tree_levels, setting):
    """The joint distribution of the first three new tokens matches the target's exactly: t1 comes from the
    prefill, t2 and t3 from the first round's verification (accepted drafts, a runner-up leaf, or the
    residual draw) or the second round."""
    base = small_vocab_base
    ea = make_kangaroo(base, exit_layer=1, threshold=0.0, steps=3, tree_levels=tree_levels, sharpness=1.0)
    runs = 800
    counts, accepted_in_first_round = sample_new_tokens(ea, PROMPT, setting, runs)
    pvalue = chi_square_pvalue(counts, exact_joint(base, PROMPT, setting))
    print(f"kangaroo {setting} tree_levels={tree_levels}: p = {pvalue:.4f}, "
          f"first-round accepted drafts {dict(sorted(accepted_in_first_round.items()))}")
    assert pvalue > 0.001
    # the drafts really decided t2 and t3 in many runs
    assert accepted_in_first_round[1] > runs // 10 and accepted_in_first_round[2] > runs // 10
