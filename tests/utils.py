"""Helpers shared by the tests: tiny random base models and hand-tuned draft heads."""

from __future__ import annotations

import torch
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

ARCHS = {"llama": (LlamaConfig, LlamaForCausalLM), "qwen2": (Qwen2Config, Qwen2ForCausalLM)}


def build_base(arch: str = "llama", vocab: int = 96, seed: int = 0, eos: int | None = None, context: int = 256,
               logit_scale: float = 1.0, context_mix: float = 1.0, hidden: int = 64, layers: int = 2):
    """A tiny random fp32 causal LM in eval mode (sdpa attention).

    ``logit_scale`` multiplies ``lm_head`` (peaked next-token distributions); ``context_mix`` scales every
    attention and MLP output projection, so 0 gives a pure bigram model (the next token depends only on
    the current one) and small values an almost-bigram model whose greedy continuation a hand-set draft
    head (see `make_oracle`) predicts almost always.
    """
    config_cls, model_cls = ARCHS[arch]
    torch.manual_seed(seed)
    config = config_cls(vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=context,
                        eos_token_id=eos, bos_token_id=None, pad_token_id=0, tie_word_embeddings=False,
                        attn_implementation="sdpa")
    model = model_cls(config).float().eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(logit_scale)
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.mul_(context_mix)
            layer.mlp.down_proj.weight.mul_(context_mix)
    return model


def make_oracle(ea_model, sharpness: float = 1.0, feature_weight: float = 0.0) -> None:
    """Turn the draft head into a bigram predictor: its output is (a scaled) embedding of its input token.

    With ``fc = [c*I, 0]``, no attention output and no expert output, the head predicts
    ``lm_head(c * embed(x))``, whose argmax is the bigram base model's next token after ``x`` (the base's
    final RMSNorm only rescales). On a base built with a small ``context_mix`` this drafts deep, mostly
    correct trees: many tokens accepted per round and heavy KV compaction. ``sharpness`` > 1 makes the
    draft distribution more confident than the base's (its top-1 chain then always survives the tree growth).
    ``feature_weight`` > 0 lets the input features in too (``fc = [c*I, w*I]``), so wrong features would show.
    """
    head = ea_model.ea_layer
    if head.config.method == "kangaroo":
        make_kangaroo_oracle(ea_model, sharpness)
        return
    hidden = head.config.hidden_size
    with torch.no_grad():
        scale = sharpness / head.embed_weight.pow(2).mean().sqrt()
        head.fc.weight.zero_()
        head.fc.weight[:, :hidden] = torch.eye(hidden) * scale
        head.fc.weight[:, hidden:] = torch.eye(hidden) * feature_weight
        if head.fc.bias is not None:
            head.fc.bias.zero_()
        head.layers[0].self_attn.o_proj.weight.zero_()
        for expert in head.layers[0].mlp_moe.experts:
            output = expert.down_proj if hasattr(expert, "down_proj") else expert.dense_4h_to_h  # SwiGLU / NeoX
            output.weight.zero_()
            if output.bias is not None:
                output.bias.zero_()


def make_kangaroo_oracle(ea_model, sharpness: float = 1.0) -> None:
    """The Kangaroo adapter's oracle: no attention output and the base's own final norm (times ``sharpness``),
    so it predicts ``lm_head(norm(s))`` from the shallow stream ``s``: the base's next token wherever the deep
    layers change little (a small ``context_mix``), exactly on a bigram base."""
    adapter = ea_model.ea_layer
    with torch.no_grad():
        adapter.self_attn.o_proj.weight.zero_()
        adapter.norm.weight.copy_(ea_model.base_model.get_decoder().norm.weight * sharpness)


def random_prompt(seed: int, vocab: int, low: int = 1, high: int = 12) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    length = int(torch.randint(low, high + 1, (1,), generator=gen))
    return torch.randint(1, vocab, (1, length), generator=gen)


def hf_greedy(model, input_ids: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
    with torch.no_grad():
        return model.generate(input_ids, attention_mask=torch.ones_like(input_ids), do_sample=False,
                              max_new_tokens=max_new_tokens)


def reference_probs(logits: torch.Tensor, temperature: float = 1.0, top_p: float = 0.0, top_k: int = 0) -> torch.Tensor:
    """The processed next-token distribution written out independently of the library (HF semantics:
    temperature, then top-k, then top-p keeping each token whose higher-ranked mass is below top_p)."""
    x = logits.double() / (temperature if temperature > 0 else 1.0)
    if top_k > 0:
        kth = x.topk(min(top_k, x.shape[-1]), dim=-1).values[..., -1:]
        x = x.masked_fill(x < kth, float("-inf"))
    probs = torch.softmax(x, dim=-1)
    if 0.0 < top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        above = sorted_probs.cumsum(-1) - sorted_probs
        keep_sorted = above < top_p
        keep_sorted[..., 0] = True
        keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
        probs = torch.where(keep, probs, torch.zeros_like(probs))
        probs = probs / probs.sum(-1, keepdim=True)
    return probs


def chi_square_pvalue(counts: dict, expected_probs: dict, min_expected: float = 5.0) -> float:
    """Chi-square goodness of fit of observed ``counts`` (outcome -> n) to ``expected_probs`` (outcome -> p).

    Outcomes with expected count below ``min_expected`` are pooled into one cell. An observed outcome with
    probability 0 fails outright (returns 0.0).
    """
    from scipy.stats import chisquare

    total = sum(counts.values())
    if any(expected_probs.get(outcome, 0.0) <= 0.0 for outcome in counts):
        return 0.0
    observed, expected, pooled_obs, pooled_exp = [], [], 0, 0.0
    for outcome, p in expected_probs.items():
        if p * total >= min_expected:
            observed.append(counts.get(outcome, 0))
            expected.append(p * total)
        else:
            pooled_obs += counts.get(outcome, 0)
            pooled_exp += p * total
    if pooled_exp > 0:
        observed.append(pooled_obs)
        expected.append(pooled_exp)
    expected = [e * total / sum(expected) for e in expected]  # absorb float rounding
    assert len(observed) >= 3, "too few cells for a meaningful test"
    return float(chisquare(observed, expected).pvalue)


# Draft heads of every method the core's tests run against: DraftConfig options and drafter options.
METHOD_OPTIONS = {
    "jakiro": {},
    "eagle2": {"num_experts": 1},
    "jakiro_star": {"method": "jakiro_star"},                       # the original's static 26-node tree
    "jakiro_star-dynamic": {"method": "jakiro_star", "tree": "dynamic"},
    "kangaroo": {"method": "kangaroo", "exit_layer": 1},              # the tiny bases have 2 layers
}
JAKIRO_DRAFTER_OPTIONS = ("cepd", "legacy_cepd_alignment")


def method_options(variant: str, **options) -> dict:
    """``options`` (tree sizes, Jakiro's drafter options) for the head of ``variant`` (a `METHOD_OPTIONS` key).

    Jakiro's CEPD options mean nothing to a Jakiro* or Kangaroo drafter and are dropped for them."""
    merged = {**options, **METHOD_OPTIONS[variant]}
    if merged.get("method") in ("jakiro_star", "kangaroo"):
        merged = {k: v for k, v in merged.items() if k not in JAKIRO_DRAFTER_OPTIONS}
    return merged


def decouple_experts(ea_model, strength: float = 10.0, seed: int = 0) -> None:
    """Give a Jakiro* head's last expert a strong random output, so its experts rank tokens differently
    (a fresh head's experts are near-identical: its children would nearly all come from one expert)."""
    experts = ea_model.ea_layer.layers[0].mlp_moe.experts
    output = experts[-1].dense_4h_to_h
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        output.weight.copy_(torch.randn(output.weight.shape, generator=generator) * strength / output.weight.shape[1] ** 0.5)


def start_drafter(ea, base, prompt, rounds: int):
    """Start the drafter on ``prompt`` and (for rounds=2) feed it one accepted round; return the context."""
    drafter = ea.drafter
    ids = prompt[0].tolist() + [5]
    with torch.no_grad():
        feats = base.model(prompt).last_hidden_state[0]
    drafter.start(prompt, feats[None], capacity=128)
    if rounds == 2:
        drafter.propose(ids[-1])
        ids += [17, 9]  # the target accepted root 5 and draft 17; 9 is the new root
        with torch.no_grad():
            feats = base.model(torch.tensor([ids[:-1]])).last_hidden_state[0]
        drafter.accept(torch.tensor([ids[-3:-1]]), feats[None, -2:])
    return ids, feats


def sample_new_tokens(ea_model, prompt: torch.Tensor, setting: dict, runs: int, length: int = 3, seed: int = 1):
    """``runs`` sampled generations of ``length`` new tokens (torch seeded once with ``seed``): how often each
    tuple of new tokens came out, and how many drafts the first round accepted (0, 1, 2 or more as 2)."""
    from collections import Counter

    torch.manual_seed(seed)
    counts: Counter = Counter()
    accepted_in_first_round: Counter = Counter()
    for _ in range(runs):
        out = ea_model.eagenerate(prompt, max_new_tokens=length, **setting)
        counts[tuple(out[0, prompt.shape[1]:].tolist())] += 1
        accepted_in_first_round[min(ea_model.last_stats.accept_lengths[0] - 1, 2)] += 1
    return counts, accepted_in_first_round
