"""Kangaroo: self-speculative decoding with double early exiting.

The base model's own first ``exit_layer`` decoder layers plus a small trained adapter (one attention
block, two RMSNorms, the base model's frozen output head) draft; drafting stops early when the
adapter's top probability falls below ``threshold`` or after ``steps`` tokens; the remaining layers
verify, starting from the shallow hidden states computed while drafting. Only what differs from the
shared core lives here: the adapter (`kangaroo.model.adapter`), the drafter (`kangaroo.model.drafter`),
the training loss and loop (`kangaroo.train`) and thin evaluation wrappers (`kangaroo.evaluation`).
Adapters load through `jakiro.EaModel.from_pretrained`, which reads the method from ``config.json``.
"""
