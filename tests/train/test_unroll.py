"""The batched training-time rollout equals drafting path by path, as inference does."""

from __future__ import annotations

import pytest
import torch

from jakiro.model.kv_cache import PreallocatedLayer
from jakiro.train.unroll import rollout_mask, unroll, valid_positions
from tests.train.test_losses import make_head


def test_mask_of_step_three_by_hand():
    mask = rollout_mask(5, 3)[0, 0].int()
    # rows: positions p = 0..4; columns: step-1 keys 0..4 | step-2 keys 0..4 | step-3 keys 0..4
    expected = torch.tensor([
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0],  # p=0: no path (s=-2), only its own key
        [0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0],  # p=1: s=-1
        [1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0],  # p=2: path from s=0: real key 0, step-2 key 1, own key 2
        [1, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0],
        [1, 1, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1],
    ])
    assert torch.equal(mask, expected)
    assert torch.equal(valid_positions(5, 3), torch.tensor([0.0, 0.0, 1.0, 1.0, 1.0]))
    assert torch.equal(rollout_mask(4, 1)[0, 0], torch.ones(4, 4, dtype=torch.bool).tril())


@pytest.mark.parametrize("contrastive", [True, False])
def test_batched_rollout_equals_drafting_each_path_with_the_inference_cache(contrastive):
    """Path from s: real-feature KV up to s, then its own predictions at s+1.. (TreeDrafter's order)."""
    torch.manual_seed(3)
    model = make_head(contrastive)
    batch, length, steps = 2, 9, 3
    features, ids = torch.randn(batch, length, 16), torch.randint(24, (batch, length))
    outputs = unroll(model, features, ids, steps, contrastive)
    assert len(outputs) == steps
    branches = "both" if contrastive else "mix"
    for b in range(batch):
        for start in range(length):
            cache = PreallocatedLayer(length + steps)
            if start:
                model(features[b:b + 1, :start], ids[b:b + 1, :start], cache=cache)  # the verified prefix
            hidden = features[b:b + 1, start:start + 1]
            for step in range(1, steps + 1):
                position = start + step - 1
                if position >= length:
                    break
                out = model(hidden, ids[b:b + 1, position:position + 1], cache=cache, branches=branches)
                mix, right = out if contrastive else (out, None)
                torch.testing.assert_close(outputs[step - 1][0][b, position], mix[0, 0], rtol=1e-5, atol=1e-5)
                if contrastive:
                    torch.testing.assert_close(outputs[step - 1][1][b, position], right[0, 0], rtol=1e-5, atol=1e-5)
                hidden = mix


def test_one_step_is_the_plain_forward():
    torch.manual_seed(4)
    model = make_head(True)
    features, ids = torch.randn(2, 6, 16), torch.randint(24, (2, 6))
    (mix, right), = unroll(model, features, ids, 1, True)
    expected = model(features, ids, branches="both")
    assert torch.equal(mix, expected[0]) and torch.equal(right, expected[1])
