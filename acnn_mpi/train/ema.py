"""An exponential moving average (EMA) of a model's trainable parameters, for evaluation.

After every optimizer step n = 1, 2, ... the average moves towards the current parameters θ:

    θ̄ ← d_n θ̄ + (1 − d_n) θ,   d_n = min(decay, (1 + n)/(10 + n))

(the warm-up d_n keeps the first, random parameters from lingering in a short training). θ̄
starts at θ, so an EMA of parameters that never change is those parameters. The average smooths
the minibatch noise of the last ~1/(1 − decay) steps; validation and the written model use it
(:meth:`WeightAverage.applied`), training itself continues on θ.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch


class WeightAverage:
    """EMA of ``model``'s trainable parameters (by name), on their device and dtype.

    Args:
        model: the module being trained.
        decay: the EMA decay per step, 0 < decay < 1 (0.999: about the last 1000 steps).
    """

    def __init__(self, model: torch.nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = float(decay)
        self.updates = 0
        self.shadow = {name: p.detach().clone() for name, p in model.named_parameters()
                       if p.requires_grad}

    def current_decay(self) -> float:
        """d_n for the next update."""
        n = self.updates + 1
        return min(self.decay, (1.0 + n) / (10.0 + n))

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        """Move the average towards the model's current parameters (call after each step)."""
        weight = 1.0 - self.current_decay()
        for name, p in model.named_parameters():
            if name in self.shadow:
                self.shadow[name].lerp_(p.detach(), weight)
        self.updates += 1

    @contextmanager
    @torch.no_grad()
    def applied(self, model: torch.nn.Module) -> Iterator[torch.nn.Module]:
        """Within the block the model holds the averaged parameters; its own come back after."""
        params = dict(model.named_parameters())
        saved = {name: params[name].detach().clone() for name in self.shadow}
        for name, value in self.shadow.items():
            params[name].copy_(value)
        try:
            yield model
        finally:
            for name, value in saved.items():
                params[name].copy_(value)

    def state_dict(self) -> dict:
        return {"decay": self.decay, "updates": self.updates,
                "shadow": {k: v.detach().to("cpu", copy=True) for k, v in self.shadow.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.decay = float(state["decay"])
        self.updates = int(state["updates"])
        for name, value in state["shadow"].items():
            self.shadow[name].copy_(value)
