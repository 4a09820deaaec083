"""Replace (or fill in) assistant turns with the base model's own answers, in batches.

A draft head predicts the base model, so training on the base model's own replies matches what
it will see at inference far better than replies written by another model.
"""

from __future__ import annotations

import torch

from ..templates import render_generation_prompt
from .conversations import Conversation


@torch.no_grad()
def generate_batch(model, prompts: list[list[int]], max_new_tokens: int, stop_ids: set[int], pad_id: int,
                   temperature: float = 0.0) -> list[list[int]]:
    """New tokens for each prompt (left-padded batch through `generate`), cut after the first stop id."""
    device = model.get_output_embeddings().weight.device
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt):] = torch.tensor(prompt)
        mask[row, width - len(prompt):] = 1
    sampling = {"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0} if temperature > 0 else {
        "do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), max_new_tokens=max_new_tokens,
                         eos_token_id=sorted(stop_ids), pad_token_id=pad_id, **sampling)
    results = []
    for row in out[:, width:].tolist():
        cut = next((i for i, t in enumerate(row) if t in stop_ids), None)
        results.append(row[:cut] if cut is not None else row)
    return results


def regenerate(model, tokenizer, conversations: list[Conversation], template: str | None, stop_ids: set[int],
               max_new_tokens: int, max_prompt_tokens: int, batch_size: int, max_turns: int,
               temperature: float = 0.0) -> list[Conversation]:
    """Conversations whose assistant turns are the base model's answers to the original user turns."""
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(stop_ids)
    users = [[m for m in c.messages if m["role"] == "user"][:max_turns] for c in conversations]
    systems = [[m for m in c.messages[:1] if m["role"] == "system"] for c in conversations]
    histories = [list(s) for s in systems]
    alive = [True] * len(conversations)
    for turn in range(max(len(u) for u in users)):
        active = [i for i in range(len(conversations)) if alive[i] and turn < len(users[i])]
        prompts = {}
        for i in active:
            prompt = render_generation_prompt(tokenizer, histories[i] + [users[i][turn]], template)
            if len(prompt) > max_prompt_tokens:
                alive[i] = False
                continue
            prompts[i] = prompt
        order = sorted(prompts, key=lambda i: len(prompts[i]))
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            replies = generate_batch(model, [prompts[i] for i in chunk], max_new_tokens, stop_ids, pad_id, temperature)
            for i, reply in zip(chunk, replies):
                text = tokenizer.decode(reply, skip_special_tokens=True).strip()
                if not text:
                    alive[i] = False
                    continue
                histories[i] += [users[i][turn], {"role": "assistant", "content": text}]
    return [Conversation(c.id, h) for c, h in zip(conversations, histories) if any(m["role"] == "assistant" for m in h)]
