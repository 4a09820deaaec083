"""Tree verification on hand-made trees and logits: greedy walks the argmax; sampling is exactly lossless."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest
import torch

from jakiro.model.sampling import SamplingConfig, TokenSampler
from jakiro.model.tree import DraftTree
from jakiro.model.verify import verify, verify_greedy, verify_sampling
from tests.utils import chi_square_pvalue, reference_probs

VOCAB = 5
# A hand-made "target": next-token logits for every context (tuple of tokens after the root).
_GEN = torch.Generator().manual_seed(1234)
WORLD = {ctx: torch.randn(VOCAB, generator=_GEN) * 0.8
         for n in range(4) for ctx in itertools.product(range(VOCAB), repeat=n)}

#            root
#      2      4      2(dup)  1        depth 1
#    3   0    2      0                depth 2
#    1                                depth 3
TREE = DraftTree(tokens=torch.tensor([9, 2, 4, 2, 1, 3, 0, 2, 0, 1]),
                 parents=torch.tensor([-1, 0, 0, 0, 0, 1, 1, 2, 3, 5]))


def _context(tree: DraftTree, node: int) -> tuple[int, ...]:
    return tuple(int(tree.tokens[n]) for n in tree.path_to(node)[1:])


for _node in range(len(TREE)):  # flatter logits inside the tree, drafted tokens favoured: deep acceptance is common
    WORLD[_context(TREE, _node)] *= 0.3
for _node in range(1, len(TREE)):
    WORLD[_context(TREE, int(TREE.parents[_node]))][int(TREE.tokens[_node])] += 1.0


def tree_logits(tree: DraftTree) -> torch.Tensor:
    return torch.stack([WORLD[_context(tree, node)] for node in range(len(tree))])


def test_greedy_follows_argmax():
    logits = tree_logits(TREE)
    verdict = verify_greedy(TREE, logits)
    tokens, expected_path, node = TREE.tokens.tolist(), [0], 0
    while True:
        best = int(logits[node].argmax())
        nxt = next((c for c in TREE.children(node) if tokens[c] == best), None)
        if nxt is None:
            break
        node = nxt
        expected_path.append(node)
    assert verdict.path == expected_path and verdict.bonus_token == int(logits[node].argmax())
    # hand-set logits: accept 2 -> 3 -> 1, then the bonus
    hand = torch.full((len(TREE), VOCAB), -1.0)
    hand[0, 2] = hand[1, 3] = hand[5, 1] = 5.0
    hand[9, 4] = 5.0
    verdict = verify(TREE, hand, TokenSampler(SamplingConfig()))
    assert verdict.path == [0, 1, 5, 9] and verdict.bonus_token == 4 and verdict.accepted_drafts == 3
    hand[0] = -1.0
    hand[0, 0] = 5.0  # no root child matches: nothing accepted
    assert verify_greedy(TREE, hand).path == [0] and verify_greedy(TREE, hand).bonus_token == 0


SETTINGS = [dict(temperature=1.0), dict(temperature=0.7, top_p=0.8), dict(temperature=1.3, top_k=3),
            dict(temperature=0.5, top_k=4, top_p=0.9)]


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: "-".join(f"{k}={v}" for k, v in s.items()))
def test_sampling_is_lossless_on_hand_tree(setting):
    """The first three emitted tokens are distributed as the target's processed joint distribution.

    Tokens past the verdict (after a bonus token) are drawn from the target directly, as the next round's
    verification would; the joint over three tokens covers acceptance at depth 1, 2 and 3, rejections
    with renormalisation, a duplicate sibling, and residual (bonus) draws.
    """
    sampler = TokenSampler(SamplingConfig(**setting))
    logits = tree_logits(TREE)
    tokens = TREE.tokens.tolist()
    torch.manual_seed(0)
    draws = 5000
    counts: Counter = Counter()
    depth_accepted: Counter = Counter()
    for _ in range(draws):
        verdict = verify_sampling(TREE, logits, sampler)
        emitted = [tokens[n] for n in verdict.path[1:]] + [verdict.bonus_token]
        depth_accepted[verdict.accepted_drafts] += 1
        while len(emitted) < 3:
            emitted.append(int(torch.multinomial(sampler.probs(WORLD[tuple(emitted)]), 1)))
        counts[tuple(emitted[:3])] += 1
    exact = {}
    for seq in itertools.product(range(VOCAB), repeat=3):
        p = 1.0
        for i in range(3):
            p *= float(reference_probs(WORLD[seq[:i]], **setting)[seq[i]])
        exact[seq] = p
    pvalue = chi_square_pvalue(counts, exact)
    print(f"hand tree {setting}: p = {pvalue:.4f}, accepted drafts {dict(sorted(depth_accepted.items()))}")
    assert pvalue > 0.001
    assert depth_accepted[2] > draws // 10 and depth_accepted[3] > draws // 100  # deep acceptance exercised


def test_sampling_when_all_mass_on_a_rejected_token():
    """A child holding (numerically) all the probability is accepted, never answered by an empty residual."""
    tree = DraftTree(tokens=torch.tensor([0, 3, 1]), parents=torch.tensor([-1, 0, 0]))
    logits = torch.full((3, VOCAB), -1e4)
    logits[0, 1] = 0.0  # root: all mass on token 1 (the second child)
    logits[2, 4] = 0.0
    sampler = TokenSampler(SamplingConfig(temperature=1.0))
    torch.manual_seed(0)
    for _ in range(50):
        verdict = verify_sampling(tree, logits, sampler)
        assert verdict.path == [0, 2] and verdict.bonus_token == 4


def test_sampler_matches_reference_processing():
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(4, 40, generator=gen) * 2
    for setting in SETTINGS + [dict(temperature=2.0, top_p=0.3), dict(temperature=1.0, top_k=1)]:
        probs = TokenSampler(SamplingConfig(**setting)).probs(logits)
        assert torch.allclose(probs.double(), reference_probs(logits, **setting), atol=1e-6), setting
    greedy = TokenSampler(SamplingConfig())
    assert greedy.greedy and greedy.sample(logits[0]) == int(logits[0].argmax())
    assert SamplingConfig(0.7, 0.9, 5).hf_generate_kwargs() == dict(do_sample=True, temperature=0.7, top_k=5, top_p=0.9)
    assert SamplingConfig().hf_generate_kwargs() == dict(do_sample=False)
