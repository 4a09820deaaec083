"""The Jakiro* loss is the EAGLE loss on the gated mixture plus the same loss on each expert alone, and it
trains the experts' own read-outs (which the mixture-only loss of the original never saw)."""

from __future__ import annotations

import torch

from jakiro.methods import new_head
from jakiro.model.configs import DraftConfig
from jakiro.model.kv_cache import PreallocatedLayer
from jakiro.train.config import TrainConfig
from jakiro.train.losses import answer_start_weighted, draft_loss
from jakiro_star.train.losses import EXPERT_WEIGHT, star_loss
from jakiro_star.train.unroll import expert_unroll
from tests.train.test_losses import reference_part


def make_star_head():
    config = DraftConfig(hidden_size=16, vocab_size=24, num_attention_heads=2, num_key_value_heads=1, head_dim=8,
                         num_experts=2, contrastive=False, expert_intermediate_size=20, method="jakiro_star")
    torch.manual_seed(0)
    model = new_head(config)
    model.embed_weight = torch.randn(24, 16)
    model.full_head_weight = torch.randn(24, 16)
    model.refresh_head()
    return model


def batch():
    torch.manual_seed(1)
    return {"hidden_state": torch.randn(2, 7, 16), "input_ids": torch.randint(24, (2, 7)),
            "loss_mask": torch.tensor([[0, 0, 1, 1, 1, 1, 1], [0, 1, 1, 1, 0, 0, 0]]).float(),
            "attention": torch.tensor([[1] * 7, [1] * 5 + [0, 0]]).float()}


def test_star_loss_matches_formula():
    model, data = make_star_head(), batch()
    total, parts = star_loss(model, data, TrainConfig(noise=0.0))
    features, mask = data["hidden_state"], data["loss_mask"] * data["attention"]
    mix, experts = model(features[:, :-1], data["input_ids"][:, 1:], branches="both")
    expected = 0.0
    for weight, prediction in ((1.0, mix), (EXPERT_WEIGHT, experts[0]), (EXPERT_WEIGHT, experts[1])):
        v, p = reference_part(prediction, features[:, 1:], mask[:, 1:], model.head_weight)
        expected = expected + weight * (1.0 * v + 0.1 * p)
    torch.testing.assert_close(total, expected, rtol=1e-5, atol=1e-6)
    assert set(parts) == {"mix", "expert0", "expert1"}
    v1, p1 = reference_part(experts[1], features[:, 1:], mask[:, 1:], model.head_weight)
    torch.testing.assert_close(parts["expert1"].cross_entropy, p1, rtol=1e-5, atol=1e-6)
    # the mixture part is exactly the core's loss of the head's default (mix) read-out
    core_total, _ = draft_loss(model, data, TrainConfig(noise=0.0))
    torch.testing.assert_close(parts["mix"].regression * 1.0 + parts["mix"].cross_entropy * 0.1, core_total)


def test_every_expert_gets_its_own_gradient():
    """With the mixture-only loss an expert's gradient is scaled by its gate weight; here each expert also
    learns as a predictor alone, so its gradient differs from the mixture-only one."""
    model, data = make_star_head(), batch()
    star_loss(model, data, TrainConfig(noise=0.0))[0].backward()
    star = model.layers[0].mlp_moe.experts[0].dense_4h_to_h.weight.grad.clone()
    model.zero_grad()
    draft_loss(model, data, TrainConfig(noise=0.0))[0].backward()
    mixture_only = model.layers[0].mlp_moe.experts[0].dense_4h_to_h.weight.grad
    assert star.abs().sum() > 0 and not torch.allclose(star, mixture_only)


def test_rollout_loss_matches_formula():
    """K = 2: step 1's term plus rollout_decay times the mean of the chains' step-2 terms, each chain fed back its
    own expert's features, counted where a path exists (p >= 1)."""
    model, data = make_star_head(), batch()
    cfg = TrainConfig(noise=0.0, rollout_steps_train=2)
    total, parts = star_loss(model, data, cfg)
    features, ids = data["hidden_state"], data["input_ids"][:, 1:]
    mask = (data["loss_mask"] * data["attention"])[:, 1:]
    outputs = expert_unroll(model, features[:, :-1], ids, 2)
    valid = (torch.arange(mask.shape[1]) >= 1).float()

    def term(mix, experts, weight):
        result = 0.0
        for share, prediction in ((1.0, mix), (EXPERT_WEIGHT, experts[0]), (EXPERT_WEIGHT, experts[1])):
            v, p = reference_part(prediction, features[:, 1:], weight, model.head_weight)
            result = result + share * (1.0 * v + 0.1 * p)
        return result

    expected = term(*outputs[0][0], mask)
    expected = expected + 0.8 * (term(*outputs[1][0], mask * valid) + term(*outputs[1][1], mask * valid)) / 2
    torch.testing.assert_close(total, expected, rtol=1e-5, atol=1e-6)
    assert {"mix", "expert0", "mix@2/chain0", "expert1@2/chain1"} <= set(parts) and len(parts) == 9
    assert float(parts["mix@2/chain0"].count) == float((mask * valid).sum())


def test_one_rollout_step_is_the_plain_forward():
    model, data = make_star_head(), batch()
    (pair,), = expert_unroll(model, data["hidden_state"], data["input_ids"], 1)
    mix, experts = model(data["hidden_state"], data["input_ids"], branches="both")
    assert torch.equal(pair[0], mix) and torch.equal(pair[1], experts)


def test_expert_chains_equal_drafting_each_path_with_the_inference_cache():
    """Chain e from start s: the real-feature KV up to s, step 1 on the real feature at s, then expert e's own
    predicted feature at s+1, s+2, ... (the order the Jakiro* drafter writes a child's KV in)."""
    model, steps = make_star_head(), 3
    torch.manual_seed(5)
    length = 8
    features, ids = torch.randn(2, length, 16), torch.randint(24, (2, length))
    outputs = expert_unroll(model, features, ids, steps)
    assert [len(row) for row in outputs] == [1, 2, 2]
    for b in range(2):
        for start in range(length):
            for expert in range(2):
                cache = PreallocatedLayer(length + steps)
                if start:
                    model(features[b:b + 1, :start], ids[b:b + 1, :start], cache=cache)
                hidden = features[b:b + 1, start:start + 1]
                for step in range(1, steps + 1):
                    position = start + step - 1
                    if position >= length:
                        break
                    mix, experts = model(hidden, ids[b:b + 1, position:position + 1], cache=cache, branches="both")
                    row = outputs[step - 1][0 if step == 1 else expert]
                    torch.testing.assert_close(row[0][b, position], mix[0, 0], rtol=1e-5, atol=1e-5)
                    torch.testing.assert_close(row[1][:, b, position], experts[:, 0, 0], rtol=1e-5, atol=1e-5)
                    hidden = experts[expert]


def test_rollout_gradient_reaches_the_fed_back_features():
    """Step 2's loss alone trains through step 1's expert outputs (the chains are not detached)."""
    model, data = make_star_head(), batch()
    outputs = expert_unroll(model, data["hidden_state"][:, :-1], data["input_ids"][:, 1:], 2)
    outputs[1][1][1][0].sum().backward()  # chain 1's expert-0 read-out at step 2
    grad = model.layers[0].mlp_moe.experts[1].dense_4h_to_h.weight.grad
    assert grad is not None and grad.abs().sum() > 0


def test_answer_start_weighting_reaches_every_expert_term():
    model, data = make_star_head(), batch()
    cfg = TrainConfig(noise=0.0, answer_start_weight=3.0, answer_start_tokens=2)
    total, parts = star_loss(model, data, cfg)
    reweighted = dict(data, loss_mask=answer_start_weighted(data, cfg)["loss_mask"])
    expected, expected_parts = star_loss(model, reweighted, TrainConfig(noise=0.0))
    torch.testing.assert_close(total, expected)
    for name in ("mix", "expert0", "expert1"):
        torch.testing.assert_close(parts[name].cross_entropy, expected_parts[name].cross_entropy)
    assert not torch.allclose(total, star_loss(model, data, TrainConfig(noise=0.0))[0])
