"""Self-distillation: the base model answers the prompts itself, and its features are kept on the way.

A draft head predicts the base model, so training on the base model's own replies matches what it
will see at inference far better than replies written by another model. The features of a reply
are captured from the very forward passes that generate it (the prefill gives the prompt's, every
decoding step the token it was fed), so no second pass over the data is needed.

Decoding is batched on a preallocated KV cache (a growing cache copies itself every step, which
costs more than the model on a CPU); rows that finished are dropped from the batch as they pile up.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..model.kv_cache import TreeKVCache
from ..model.target import cache_keyword
from ..templates import encode_with_mask, render_generation_prompt
from .conversations import Conversation


@dataclass
class Generated:
    """One prompt's answer: ``tokens`` = prompt + reply ids, ``features`` [len(tokens), H] and extra layers."""

    prompt_length: int
    tokens: list[int]
    features: torch.Tensor
    layers: dict[int, torch.Tensor] = field(default_factory=dict)

    @property
    def reply(self) -> list[int]:
        return self.tokens[self.prompt_length:]


class _LayerTap:
    """Forward hooks that keep the residual stream after decoder layer ``l`` (HF ``hidden_states[l]``)."""

    def __init__(self, decoder, layers: list[int]):
        self.outputs: dict[int, torch.Tensor] = {}
        self.handles = [decoder.layers[layer - 1].register_forward_hook(self._keeper(layer)) for layer in layers]

    def _keeper(self, layer: int):
        def keep(module, args, output):
            self.outputs[layer] = output[0] if isinstance(output, tuple) else output
        return keep

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()


def _next_tokens(logits: torch.Tensor, temperature: float, generator: torch.Generator | None) -> torch.Tensor:
    if temperature <= 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]


@torch.no_grad()
def generate_with_features(model, prompts: list[list[int]], max_new_tokens: int, stop_ids: set[int],
                           temperature: float = 0.0, save_layers: list[int] | None = None,
                           generator: torch.Generator | None = None, compact_fraction: float = 0.25) -> list[Generated]:
    """Answer every prompt (greedy, or sampled at ``temperature``) and return tokens with their features.

    A reply ends after its first stop id (kept) or after ``max_new_tokens`` tokens. Every reply
    token is fed back once, so each position of ``tokens`` has its feature."""
    save_layers = sorted(save_layers or [])
    decoder, lm_head = model.get_decoder(), model.get_output_embeddings()
    device = lm_head.weight.device
    batch, width = len(prompts), max(len(p) for p in prompts)
    total = width + max_new_tokens + 1
    ids = torch.zeros((batch, width), dtype=torch.long)
    mask = torch.zeros((batch, total), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt):] = torch.tensor(prompt)
        mask[row, width - len(prompt):width] = 1
    ids, mask = ids.to(device), mask.to(device)
    positions = (mask[:, :width].cumsum(-1) - 1).clamp(min=0)
    cache = TreeKVCache(model.config.num_hidden_layers, total)
    tap = _LayerTap(decoder, save_layers)
    features: list[list[torch.Tensor]] = [[] for _ in range(batch)]
    layer_features: list[dict[int, list[torch.Tensor]]] = [{layer: [] for layer in save_layers} for _ in range(batch)]
    replies: list[list[int]] = [[] for _ in range(batch)]
    try:
        hidden = decoder(input_ids=ids, attention_mask=mask[:, :width], position_ids=positions,
                         use_cache=True, **{cache_keyword(decoder): cache}).last_hidden_state
        for row, prompt in enumerate(prompts):
            features[row].append(hidden[row, width - len(prompt):].float().cpu())
            for layer in save_layers:
                layer_features[row][layer].append(tap.outputs[layer][row, width - len(prompt):].float().cpu())
        rows = torch.arange(batch, device=device)  # original index of each batch row still in the cache
        retired = torch.zeros(batch, dtype=torch.bool, device=device)  # rows done, awaiting compaction
        next_ids = _next_tokens(lm_head(hidden[:, -1]), temperature, generator)
        next_position = positions[:, -1] + 1
        for row, token in enumerate(next_ids.tolist()):
            replies[row].append(token)
        for step in range(max_new_tokens):
            live = (~retired).nonzero()[:, 0].tolist()
            done = torch.zeros_like(retired)
            for i in live:
                reply = replies[int(rows[i])]
                done[i] = reply[-1] in stop_ids or len(reply) >= max_new_tokens
            column = width + step
            mask[:, column] = 1
            hidden = decoder(input_ids=next_ids[:, None], attention_mask=mask[:, :column + 1],
                             position_ids=next_position[:, None], use_cache=True,
                             **{cache_keyword(decoder): cache}).last_hidden_state
            for i in live:  # the fed token's feature
                row = int(rows[i])
                features[row].append(hidden[i].float().cpu())
                for layer in save_layers:
                    layer_features[row][layer].append(tap.outputs[layer][i].float().cpu())
            retired |= done
            if bool(retired.all()):
                break
            next_ids = _next_tokens(lm_head(hidden[:, -1]), temperature, generator).masked_fill(retired, 0)
            next_position = next_position + 1
            for i in (~retired).nonzero()[:, 0].tolist():
                replies[int(rows[i])].append(int(next_ids[i]))
            if int(retired.sum()) >= max(1, int(compact_fraction * len(rows))):  # drop finished rows
                keep = (~retired).nonzero()[:, 0]
                cache.keep_rows(keep)
                rows, next_ids, next_position = rows[keep], next_ids[keep], next_position[keep]
                mask, retired = mask[keep], retired[keep]
    finally:
        tap.close()
    return [Generated(len(prompt), list(prompt) + replies[row], torch.cat(features[row]),
                      {layer: torch.cat(layer_features[row][layer]) for layer in save_layers})
            for row, prompt in enumerate(prompts)]


def _loss_mask(tokenizer, messages: list[dict[str, str]], template: str | None, stop_ids: set[int],
               generated: Generated) -> list[int]:
    """1 on every assistant reply of the conversation (and its end of turn), aligned with ``generated.tokens``.

    The conversation re-rendered by its template normally reproduces the generated ids exactly (the
    earlier replies are in the prompt as text); where it does not, only the last reply is trained."""
    ids, mask = encode_with_mask(tokenizer, messages, template, stop_ids)
    if ids[:len(generated.tokens)] == generated.tokens:
        return mask[:len(generated.tokens)]
    return [0] * generated.prompt_length + [1] * len(generated.reply)


def regenerate(model, tokenizer, conversations: list[Conversation], template: str | None, stop_ids: set[int],
               max_new_tokens: int, max_prompt_tokens: int, batch_size: int, max_turns: int,
               temperature: float = 0.0, save_layers: list[int] | None = None,
               generator: torch.Generator | None = None,
               skipped: dict[str, int] | None = None) -> tuple[list[Conversation], list[dict[str, torch.Tensor]]]:
    """The conversations answered by the base model (up to ``max_turns`` user turns each) and their samples.

    Conversations left without any answer are counted by reason in ``skipped`` (when given).

    A sample holds ``input_ids``, ``loss_mask``, ``hidden_state`` (and ``hidden_state_layer{l}``) of
    the whole conversation, taken from the forward passes of its last turn: that turn's prefill
    covers every earlier turn, its decoding steps the last reply."""
    users = [[m for m in c.messages if m["role"] == "user"][:max_turns] for c in conversations]
    histories = [[m for m in c.messages[:1] if m["role"] == "system"] for c in conversations]
    last: list[Generated | None] = [None] * len(conversations)
    alive = [True] * len(conversations)
    reasons = ["answered"] * len(conversations)
    for turn in range(max((len(u) for u in users), default=0)):
        prompts = {}
        for i in range(len(conversations)):
            if alive[i] and turn < len(users[i]):
                prompt = render_generation_prompt(tokenizer, histories[i] + [users[i][turn]], template)
                if len(prompt) > max_prompt_tokens:
                    alive[i] = False
                    reasons[i] = ("with a prompt longer than --max-length minus --max-new-tokens "
                                  f"({max_prompt_tokens} tokens)")
                else:
                    prompts[i] = prompt
        order = sorted(prompts, key=lambda i: len(prompts[i]))
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            answers = generate_with_features(model, [prompts[i] for i in chunk], max_new_tokens, stop_ids,
                                             temperature, save_layers, generator)
            for i, answer in zip(chunk, answers):
                reply = answer.reply[:-1] if answer.reply and answer.reply[-1] in stop_ids else answer.reply
                text = tokenizer.decode(reply, skip_special_tokens=True).strip()
                if not text:
                    alive[i] = False
                    reasons[i] = "whose answer by the base model was empty"
                    continue
                histories[i] += [users[i][turn], {"role": "assistant", "content": text}]
                last[i] = answer
    answered, samples = [], []
    for conversation, history, answer, reason in zip(conversations, histories, last, reasons):
        if answer is None:
            if skipped is not None:
                skipped[reason] = skipped.get(reason, 0) + 1
            continue
        answered.append(Conversation(conversation.id, history))
        sample = {"input_ids": torch.tensor(answer.tokens),
                  "loss_mask": torch.tensor(_loss_mask(tokenizer, history, template, stop_ids, answer)),
                  "hidden_state": answer.features}
        for layer, values in answer.layers.items():
            sample[f"hidden_state_layer{layer}"] = values
        samples.append(sample)
    return answered, samples


def to_sharegpt(conversation: Conversation) -> dict:
    """A conversation in the ShareGPT format `load_conversations` reads (so text can be re-featurised)."""
    names = {"user": "human", "assistant": "gpt", "system": "system"}
    return {"id": conversation.id,
            "conversations": [{"from": names[m["role"]], "value": m["content"]} for m in conversation.messages]}
