"""KV caches: the target cache after compaction equals a from-scratch forward of the committed ids, and the
draft cache's stable part equals a from-scratch draft forward over the committed (feature, token) pairs."""

from __future__ import annotations

import pytest
import torch

from jakiro.model.ea_model import EaModel
from jakiro.model.kv_cache import PreallocatedLayer, TreeKVCache
from tests.utils import make_oracle, random_prompt


def test_preallocated_layer_update_crop_compact():
    layer = PreallocatedLayer(capacity=10)
    keys = torch.arange(6.0).view(1, 1, 6, 1).expand(1, 2, 6, 3).contiguous()
    k, v = layer.update(keys, keys + 100)
    assert layer.length == 6 and torch.equal(k, keys) and torch.equal(v, keys + 100)
    layer.compact(2, torch.tensor([0, 3, 1]))  # keep offsets 0, 3, 1 after position 2 -> values 2, 5, 3
    assert layer.length == 5
    assert layer.keys[0, 0, :5, 0].tolist() == [0, 1, 2, 5, 3]
    assert layer.values[0, 1, :5, 0].tolist() == [100, 101, 102, 105, 103]
    layer.crop(3)
    assert layer.get_seq_length() == 3 and layer.get_mask_sizes(4) == (7, 0)
    with pytest.raises(RuntimeError, match="overflow"):
        layer.update(torch.zeros(1, 2, 8, 3), torch.zeros(1, 2, 8, 3))
    cache = TreeKVCache(num_layers=2, capacity=10)
    assert cache.length == 0
    cache.compact(0, torch.tensor([]))  # uninitialised layers: only the lengths move
    assert cache.length == 0


def fresh_target_cache(base, ids: torch.Tensor):
    with torch.no_grad():
        out = base.model(ids, use_cache=True)
    return out.past_key_values, out.last_hidden_state[0]


@pytest.mark.parametrize("nodes,moved", [([0, 1, 2], False), ([0], False), ([0, 1, 4, 5], True), ([0, 3], True)])
def test_tree_compaction_keeps_the_accepted_entries_and_copies_only_those_out_of_place(nodes, moved):
    cache = TreeKVCache(num_layers=2, capacity=16)
    keys = torch.arange(2 * 10 * 3, dtype=torch.float32).view(1, 2, 10, 3)
    for layer in cache.layers:
        layer.update(keys, keys + 0.5)
    before = [layer.keys.clone() for layer in cache.layers]
    cache.compact(4, torch.tensor(nodes))
    for layer, old in zip(cache.layers, before):
        assert layer.length == 4 + len(nodes)
        expected = keys[:, :, [*range(4), *(4 + n for n in nodes)]]
        torch.testing.assert_close(layer.keys[:, :, :layer.length], expected, rtol=0, atol=0)
        torch.testing.assert_close(layer.values[:, :, :layer.length], expected + 0.5, rtol=0, atol=0)
        assert torch.equal(layer.keys, old) != moved  # entries in place are not copied at all


@pytest.mark.parametrize("arch,options,oracle", [
    ("llama", dict(total_token=40, depth=5, top_k=3, cepd=False), True),
    ("llama", dict(total_token=30, depth=4, top_k=4), True),
    ("qwen2", dict(total_token=60, depth=5, top_k=10), True),
    ("qwen2", dict(total_token=12, depth=3, top_k=4, num_experts=1), False),
], ids=["llama-oracle-nocepd", "llama-oracle-cepd", "qwen2-oracle", "qwen2-random-eagle2"])
@pytest.mark.parametrize("temperature", [0.0, 1.0], ids=["greedy", "sampling"])
def test_caches_equal_recomputation(tiny_base, monkeypatch, arch, options, oracle, temperature):
    base = tiny_base(arch, logit_scale=15.0, context_mix=0.3)
    ea = EaModel.from_base_model(base, seed=0, draft_dtype="float32", **options)  # draft KV compared at fp32
    if oracle:
        make_oracle(ea, feature_weight=0.2)  # features enter the draft keys: misrouted features would show
    drafter, target = ea.drafter, ea._target
    snapshots = []  # (stable length, target length, draft keys, draft values) as each round's drafting ends
    original = drafter.propose

    def propose(root):
        tree = original(root)
        stable = drafter.stable
        snapshots.append((stable, target.length, drafter.cache.keys[:, :, :stable].clone(),
                          drafter.cache.values[:, :, :stable].clone()))
        return tree

    monkeypatch.setattr(drafter, "propose", propose)
    prompt = random_prompt(2, base.config.vocab_size, low=5)
    torch.manual_seed(0)
    steps = []
    for ids in ea.ea_generate(prompt, temperature=temperature, max_new_tokens=100):
        steps.append(ids)
        if len(steps) == 7:
            break
    rounds = len(steps) - 1
    assert rounds == 6 and ea.last_stats.rounds == rounds
    if oracle:  # drafts were accepted, so compaction moved entries from deep inside the trees
        assert sum(ea.last_stats.accept_lengths) - rounds >= 4

    # target: everything but the latest bonus token is committed
    committed = steps[-1][:, :-1]
    assert target.length == committed.shape[1]
    reference, features = fresh_target_cache(base, committed)
    for layer, ref in zip(target.cache.layers, reference.layers):
        n = committed.shape[1]
        torch.testing.assert_close(layer.keys[:, :, :n], ref.keys, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(layer.values[:, :, :n], ref.values, atol=1e-5, rtol=1e-4)

    # draft: at the end of round r's drafting its stable cache covers exactly the committed positions, and
    # equals a causal draft forward over (f_t, x_{t+1}) of those positions
    assert len(snapshots) == rounds
    head = ea.ea_layer
    for r, (stable, target_length, keys, values) in enumerate(snapshots):
        ids = steps[r]  # prompt + tokens so far; the last one is this round's root
        assert stable == target_length == ids.shape[1] - 1
        cache = PreallocatedLayer(capacity=stable)
        with torch.no_grad():
            head(features[None, :stable], ids[:, 1:stable + 1], cache=cache)
        torch.testing.assert_close(keys, cache.keys, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(values, cache.values, atol=1e-4, rtol=1e-4)
