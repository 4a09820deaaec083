"""Chain accuracy by answer position: the buckets split exactly the chains the held-out metric counts."""

from __future__ import annotations

import pytest
import torch

from jakiro.errors import ConfigError
from jakiro.train.chain_by_position import chain_by_position, parse_edges
from jakiro.train.config import TrainConfig
from jakiro.train.losses import answer_index
from jakiro.train.rollout import evaluate
from tests.train.test_losses import make_head
from tests.train.test_rollout import samples_that_agree_sometimes, slow_chain


def test_buckets_partition_the_chains_of_every_start():
    model = make_head(True).eval()
    samples = samples_that_agree_sometimes(model, count=3, length=16)
    for sample in samples:  # two answer turns per conversation
        sample["loss_mask"][7:9] = 0
    steps, edges = 3, (0, 2, 4)
    rows = chain_by_position(model, samples, TrainConfig(), steps, edges)
    overall = evaluate(model, samples, TrainConfig(rollout_steps=steps, eval_starts=0), torch.device("cpu"))
    total = sum(row["rollouts"] for row in rows)
    assert total == overall["rollouts"] and all(row["rollouts"] > 0 for row in rows)
    merged = sum(torch.tensor(row["acc_per_step"]) * row["rollouts"] for row in rows) / total
    torch.testing.assert_close(merged, torch.tensor(overall["acc_per_step"]))
    assert [row["answer_tokens"] for row in rows] == ["0-1", "2-3", "4+"]
    # the first bucket holds exactly the starts whose drafted token is one of an answer's first two
    expected, tried = torch.zeros(steps), 0
    for sample in samples:
        index = answer_index(sample["loss_mask"])
        for start in range(len(index) - steps - 2):
            if 0 <= index[start + 1] < 2:
                matched, count = slow_chain_from(model, sample, steps, start)
                expected, tried = expected + matched, tried + count
    assert rows[0]["rollouts"] == tried
    torch.testing.assert_close(torch.tensor(rows[0]["acc_per_step"]), expected / tried)
    # the base model's confidence where the first bucket drafts: its probability of its own greedy token
    confidences = []
    for sample in samples:
        index = answer_index(sample["loss_mask"])
        for start in range(len(index) - steps - 2):
            if 0 <= index[start + 1] < 2:
                probs = torch.softmax(sample["hidden_state"][start + 1].float() @ model.full_head_weight.T, -1)
                confidences.append(float(probs.max()))
    assert rows[0]["base_top1_probability"] == pytest.approx(sum(confidences) / len(confidences))
    assert all(0 < row["base_top1_probability"] <= 1 for row in rows)


def slow_chain_from(model, sample, steps, start):
    """`slow_chain` for one start position."""
    mask = torch.zeros_like(sample["loss_mask"])
    mask[start + 1] = 1  # chain_starts then yields exactly this start
    return slow_chain(model, dict(sample, loss_mask=mask), steps, 0)


@pytest.mark.parametrize("text", ["", "5,10", "0,10,10", "0,a"])
def test_bad_bucket_edges_are_refused(text):
    with pytest.raises(ConfigError, match="--buckets"):
        parse_edges(text)
