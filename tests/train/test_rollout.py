"""Held-out chain accuracy: the batched evaluation equals greedy chain drafting start by start."""

from __future__ import annotations

import pytest
import torch

from jakiro.model.kv_cache import PreallocatedLayer
from jakiro.train.config import TrainConfig
from jakiro.train.rollout import chain_starts, evaluate
from tests.train.test_losses import make_head


def slow_chain(model, sample, steps, per_sequence):
    """Per start: the inference cache holds the real prefix; draft `steps` tokens; stop at the first miss."""
    ids, features, mask = sample["input_ids"], sample["hidden_state"], sample["loss_mask"]
    teacher = (features @ model.full_head_weight.T).argmax(-1)
    matched, tried = torch.zeros(steps), 0
    for start in chain_starts(mask, steps, per_sequence).tolist():
        cache = PreallocatedLayer(len(ids) + steps)
        if start:
            model(features[None, :start], ids[None, 1:start + 1], cache=cache)
        hidden = features[None, start:start + 1]
        for step in range(steps):
            position = start + step
            hidden = model(hidden, ids[None, position + 1:position + 2], cache=cache)
            if model.to_target_ids(model.logits(hidden[0, -1]).argmax()) != teacher[position + 1]:
                break
            matched[step] += 1
        tried += 1
    return matched, tried


def samples_that_agree_sometimes(model, count=3, length=14):
    """Features the head itself produced (f_{t+1} = its draft from the real prefix), with a few replaced
    by noise, so chains of several correct steps occur and break at different depths."""
    torch.manual_seed(7)
    out = []
    for _ in range(count):
        features = torch.randn(length, 16)
        ids = torch.randint(24, (length,))
        with torch.no_grad():
            for t in range(length - 1):
                if torch.rand(()) < 0.8:
                    features[t + 1] = model(features[None, :t + 1], ids[None, 1:t + 2])[0, -1]
        mask = torch.ones(length)
        mask[:2] = 0
        out.append({"input_ids": ids, "loss_mask": mask, "hidden_state": features})
    return out


@pytest.mark.parametrize("per_sequence", [0, 4])
def test_batched_chain_accuracy_equals_the_per_start_loop(per_sequence):
    model = make_head(True).eval()
    samples = samples_that_agree_sometimes(model)
    config = TrainConfig(rollout_steps=4, eval_starts=per_sequence, rollout_steps_train=2)
    result = evaluate(model, samples, config, torch.device("cpu"))
    matched, tried = torch.zeros(4), 0
    for sample in samples:
        m, t = slow_chain(model, sample, 4, per_sequence)
        matched, tried = matched + m, tried + t
    assert result["rollouts"] == tried > 0
    torch.testing.assert_close(torch.tensor(result["acc_per_step"]), matched / tried)
    assert result["acc_per_step"][0] > result["acc_per_step"][1] > 0  # step 2 counts only after step 1 is right
    assert result["simulated_accept_length"] == pytest.approx(1 + sum(result["acc_per_step"]))


def test_chain_starts_spread_or_all():
    mask = torch.tensor([0, 0, 1, 1, 1, 1, 1, 1, 1, 1.0])
    assert chain_starts(mask, 3, 0).tolist() == [1, 2, 3, 4]
    assert chain_starts(mask, 3, 2).tolist() == [1, 4]
    assert len(chain_starts(mask[:4], 3, 0)) == 0
