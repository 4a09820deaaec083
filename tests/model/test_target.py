"""TargetRunner: tree verification gives every node the logits of a plain forward over its own path."""

from __future__ import annotations

import pytest
import torch

from jakiro.model.target import TargetRunner
from jakiro.model.tree import DraftTree
from tests.utils import random_prompt


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_tree_logits_equal_path_forwards(tiny_base, arch):
    base = tiny_base(arch)
    runner = TargetRunner(base)
    runner.reset(64)
    prompt = random_prompt(6, base.config.vocab_size, low=4)
    with torch.no_grad():
        logits, features = runner.extend(prompt)
        full = base(prompt, output_hidden_states=False)
    torch.testing.assert_close(logits, full.logits[0, -1], atol=1e-5, rtol=1e-4)
    assert features.shape == (1, prompt.shape[1], base.config.hidden_size)
    gen = torch.Generator().manual_seed(0)
    tree = DraftTree(tokens=torch.randint(1, base.config.vocab_size, (9,), generator=gen),
                     parents=torch.tensor([-1, 0, 0, 1, 1, 2, 3, 6, 0]))
    prefix = runner.length
    logits, hidden = runner.verify(tree)
    assert runner.length == prefix + len(tree)
    for node in range(len(tree)):
        path = tree.tokens[tree.path_to(node)]
        ids = torch.cat((prompt[0], path))[None]
        with torch.no_grad():
            ref = base.model(ids).last_hidden_state[0, -1]
        torch.testing.assert_close(hidden[node], ref, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(logits[node], base.lm_head(ref), atol=1e-5, rtol=1e-4)

    # keep the path 0 -> 1 -> 3 -> 6 -> 7 and continue: the cache behaves as if that path had been decoded
    runner.commit(prefix, [0, 1, 3, 6, 7])
    assert runner.length == prefix + 5
    nxt = torch.tensor([[5, 8]])
    logits, _ = runner.extend(nxt)
    ids = torch.cat((prompt[0], tree.tokens[[0, 1, 3, 6, 7]], nxt[0]))[None]
    with torch.no_grad():
        ref = base(ids).logits[0, -1]
    torch.testing.assert_close(logits, ref, atol=1e-5, rtol=1e-4)


def test_reset_reuses_or_grows_the_cache(tiny_base):
    runner = TargetRunner(tiny_base("llama"))
    runner.reset(32)
    cache = runner.cache
    runner.extend(torch.tensor([[1, 2, 3]]))
    runner.reset(16)
    assert runner.cache is cache and runner.length == 0
    runner.reset(64)
    assert runner.cache is not cache and runner.cache.capacity == 64
