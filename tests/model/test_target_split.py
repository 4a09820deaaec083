"""Split forwards of the target (early exit): shallow layers [0, l) then deep layers [l, L) on one cache equal
the full forward, for a prompt and for a tree, and leave the same KV entries in every layer."""

from __future__ import annotations

import pytest
import torch

from jakiro.errors import ConfigError
from jakiro.model.target import TargetRunner
from jakiro.model.tree import DraftTree
from tests.utils import random_prompt

CLOSE = dict(atol=1e-5, rtol=1e-4)


def assert_same_cache(a: TargetRunner, b: TargetRunner, length: int) -> None:
    assert a.cache.layer_lengths() == b.cache.layer_lengths() == [length] * a.num_layers
    for x, y in zip(a.cache.layers, b.cache.layers):
        torch.testing.assert_close(x.keys[:, :, :length], y.keys[:, :, :length], **CLOSE)
        torch.testing.assert_close(x.values[:, :, :length], y.values[:, :, :length], **CLOSE)


def random_tree(vocab: int, seed: int) -> DraftTree:
    gen = torch.Generator().manual_seed(seed)
    return DraftTree(tokens=torch.randint(1, vocab, (9,), generator=gen),
                     parents=torch.tensor([-1, 0, 0, 1, 1, 2, 3, 6, 0]))


@pytest.mark.parametrize("arch,layers,exit_layer", [("llama", 4, 1), ("llama", 4, 3), ("qwen2", 3, 2)])
def test_split_prefill_and_tree_equal_full_forward(tiny_base, arch, layers, exit_layer):
    base = tiny_base(arch, layers=layers)
    vocab = base.config.vocab_size
    full, split = TargetRunner(base), TargetRunner(base)
    full.reset(64)
    split.reset(64)
    prompt = random_prompt(3, vocab, low=5)

    logits, features = full.extend(prompt)
    shallow = split.run_shallow(prompt, exit_layer)
    # while only the shallow layers ran, the committed length is the deep layers' (still empty)
    assert split.length == 0 and split.layer_length(0) == prompt.shape[1]
    deep = split.run_deep(shallow, exit_layer)
    torch.testing.assert_close(deep, features, **CLOSE)
    torch.testing.assert_close(split.lm_head(deep[0, -1]), logits, **CLOSE)
    with torch.no_grad():
        reference = base.model(prompt, output_hidden_states=True)
    torch.testing.assert_close(shallow, reference.hidden_states[exit_layer], **CLOSE)  # the raw residual stream
    assert_same_cache(full, split, prompt.shape[1])

    # a tree: full verification vs shallow drafting level by level, then deep-only verification
    tree = random_tree(vocab, 1)
    start = full.length
    full_logits, full_hidden = full.verify(tree)
    levels = [(0, 1), (1, 3), (3, 6), (6, 8), (8, 9)]  # node ranges; a parent always lies in an earlier range
    parts = []
    for a, b in levels:
        positions = (tree.depths[a:b] + start)[None]
        parts.append(split.run_shallow(tree.tokens[a:b][None], exit_layer, positions, tree.ancestor_mask[a:b, :b]))
        assert split.layer_length(exit_layer - 1) == start + b and split.length == start
    split_logits, split_hidden = split.verify_deep(tree, torch.cat(parts, dim=1), exit_layer)
    torch.testing.assert_close(split_hidden, full_hidden, **CLOSE)
    for node in range(len(tree)):
        torch.testing.assert_close(split_logits[node], full_logits[node], **CLOSE)
    assert_same_cache(full, split, start + len(tree))

    # commit a path (rejected nodes dropped in every layer) and continue causally: still the same cache
    for runner in (full, split):
        runner.commit(start, [0, 2, 5])
    assert_same_cache(full, split, start + 3)
    nxt = torch.tensor([[5, 8, 2]])
    logits, _ = full.extend(nxt)
    split_logits = split.lm_head(split.run_deep(split.run_shallow(nxt, exit_layer), exit_layer)[0, -1])
    torch.testing.assert_close(split_logits, logits, **CLOSE)
    ids = torch.cat((prompt[0], tree.tokens[[0, 2, 5]], nxt[0]))[None]
    with torch.no_grad():
        torch.testing.assert_close(logits, base(ids).logits[0, -1], **CLOSE)
    assert_same_cache(full, split, ids.shape[1])


def test_extend_capture_returns_the_exit_layer_stream(tiny_base):
    base = tiny_base("llama", layers=4)
    runner, plain = TargetRunner(base), TargetRunner(base)
    runner.reset(32)
    plain.reset(32)
    prompt = random_prompt(4, base.config.vocab_size, low=4)
    logits, features, stream = runner.extend_capture(prompt, 2)
    ref_logits, ref_features = plain.extend(prompt)
    torch.testing.assert_close(logits, ref_logits, **CLOSE)
    torch.testing.assert_close(features, ref_features, **CLOSE)
    check = TargetRunner(base)
    check.reset(32)
    torch.testing.assert_close(stream, check.run_shallow(prompt, 2), **CLOSE)
    # a second chunk after a cached prefix (the causal mask after the cache)
    more = torch.tensor([[7, 3, 9]])
    _, _, stream = runner.extend_capture(more, 2)
    torch.testing.assert_close(stream, check.run_shallow(more, 2), **CLOSE)


@pytest.mark.parametrize("bad", [0, 4, -1, 1.5, True, "2"])
def test_bad_exit_layer(tiny_base, bad):
    runner = TargetRunner(tiny_base("llama", layers=4))
    with pytest.raises(ConfigError, match="exit_layer must be an integer in 1..3"):
        runner.check_exit_layer(bad)
    assert runner.check_exit_layer(3) == 3
