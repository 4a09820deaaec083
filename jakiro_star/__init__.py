"""Jakiro*: decoupled multi-head drafting. Each of the draft layer's experts proposes its own candidates.

Only what differs from the shared core lives here: the head (`jakiro_star.model.head`), the drafter
(`jakiro_star.model.drafter`), the training loss (`jakiro_star.train.losses`) and thin command
wrappers. Heads load through `jakiro.EaModel.from_pretrained`, which reads the method from the head's
``config.json`` (see `jakiro.methods`).
"""
