"""Speculative sampling through `eagenerate` is distributed exactly as the target (chi-square tests)."""

from __future__ import annotations

import pytest
import torch

from jakiro.errors import ConfigError
from jakiro.model.ea_model import EaModel
from jakiro.model.sampling import SamplingConfig
from tests.utils import (build_base, chi_square_pvalue, decouple_experts, make_oracle, method_options, reference_probs,
                         sample_new_tokens)

VOCAB = 16
PROMPT = torch.tensor([[3, 1, 4, 1, 5]])


@pytest.fixture(scope="module")
def small_vocab_base():
    # peaked, context-dependent distributions over 16 tokens
    return build_base("llama", vocab=VOCAB, seed=5, logit_scale=10.0)


def exact_joint(base, prompt: torch.Tensor, setting: dict, length: int = 3) -> dict:
    """p(t1) p(t2|t1) p(t3|t1,t2) of the processed target distribution, by batched forwards over all prefixes."""
    joint = {(): 1.0}
    with torch.no_grad():
        for step in range(length):
            prefixes = list(joint)
            ids = torch.cat((prompt.expand(len(prefixes), -1), torch.tensor(prefixes, dtype=torch.long).view(len(prefixes), step)), 1)
            probs = reference_probs(base(ids).logits[:, -1], **setting)
            joint = {prefix + (t,): joint[prefix] * float(probs[i, t])
                     for i, prefix in enumerate(prefixes) for t in range(VOCAB) if probs[i, t] > 0}
    return joint


SETTINGS = [dict(temperature=1.0), dict(temperature=0.7, top_p=0.8), dict(temperature=0.7, top_k=5)]
# (draft method, setting): every setting for Jakiro; each setting once more among the other methods
CASES = ([("jakiro", setting) for setting in SETTINGS] + [("jakiro_star", SETTINGS[0]), ("jakiro_star", SETTINGS[1]),
                                                          ("jakiro_star-dynamic", SETTINGS[2]), ("eagle2", SETTINGS[0])])


@pytest.mark.parametrize("variant,setting", CASES,
                         ids=[f"{v}-" + "-".join(f"{k}={x}" for k, x in s.items()) for v, s in CASES])
def test_eagenerate_sampling_is_lossless(small_vocab_base, variant, setting):
    """The joint distribution of the first three new tokens matches the target's exactly.

    t1 comes from the prefill, t2 and t3 from the first round's tree verification (accepted drafts or the
    bonus/residual draw) or the second round: the joint covers the conditional distributions along the tree.
    A Jakiro* head's second expert is made to rank tokens differently, so its trees mix both experts' candidates.
    """
    base = small_vocab_base
    # Jakiro*: 13 nodes, so its static tree reaches depth 3 ([0,0,0] is its 13th node) like the others' trees
    budget = 13 if variant.startswith("jakiro_star") else 10
    ea = EaModel.from_base_model(base, seed=0, **method_options(variant, total_token=budget, depth=3, top_k=3))
    make_oracle(ea)  # drafts the base's likely tokens: acceptance in the tree is frequent
    if ea.method == "jakiro_star":
        decouple_experts(ea, strength=3.0)
    runs = 1200
    counts, accepted_in_first_round = sample_new_tokens(ea, PROMPT, setting, runs)
    exact = exact_joint(base, PROMPT, setting)
    pvalue = chi_square_pvalue(counts, exact)
    print(f"eagenerate {variant} {setting}: p = {pvalue:.4f}, "
          f"first-round accepted drafts {dict(sorted(accepted_in_first_round.items()))}")
    assert pvalue > 0.001
    # the tree really decided t2 and t3 in many runs
    assert accepted_in_first_round[1] > runs // 10 and accepted_in_first_round[2] > runs // 10
    if ea.method == "jakiro_star":  # and its trees really held children of both experts
        assert ea.drafter.decoupling.mixed_sibling_share > 0.2, ea.drafter.decoupling.as_dict()


def test_sampling_is_reproducible_with_a_seed(small_vocab_base):
    ea = EaModel.from_base_model(small_vocab_base, seed=0, total_token=10, depth=3, top_k=3)
    outputs = []
    for _ in range(2):
        torch.manual_seed(42)
        outputs.append(ea.eagenerate(PROMPT, temperature=0.9, top_p=0.95, max_new_tokens=12).tolist())
    assert outputs[0] == outputs[1]


@pytest.mark.parametrize("kwargs", [dict(temperature=-0.1), dict(temperature=float("nan")), dict(temperature="hot"),
                                    dict(top_p=1.5), dict(top_p=-0.2), dict(top_p=float("nan")), dict(top_k=-1),
                                    dict(top_k=2.5), dict(top_k=True)])
def test_invalid_sampling_settings(small_vocab_base, kwargs):
    with pytest.raises(ConfigError):
        SamplingConfig(**kwargs)
    ea = EaModel.from_base_model(small_vocab_base, seed=0, total_token=4, depth=1, top_k=2)
    with pytest.raises(ConfigError):
        ea.eagenerate(PROMPT, max_new_tokens=2, **kwargs)
