"""Switching LoRA adapters between passes without walking the whole model."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class LoraSwitch:
    """The pipeline's LoRA layers, found once per loaded file, and the adapters they run.

    peft's `set_adapters`/`disable_lora` walk every module of the UNet and the text encoder
    (thousands) at each call, twice a job; here a switch touches only the LoRA layers, and
    only when a pass asks for other adapters or weights than the pass before it.
    """

    def __init__(self) -> None:
        self.layers: list[Any] = []
        self.state: tuple[tuple[str, float], ...] | None = None  # None: not known (set it anew)

    def find_layers(self, *models: Any) -> None:
        """After a LoRA file is loaded: the LoRA layers found anew, and the state set anew."""
        from peft.tuners.tuners_utils import BaseTunerLayer

        self.layers = [m for model in models for m in model.modules() if isinstance(m, BaseTunerLayer)]
        self.state = None

    def apply(self, weights: Mapping[str, float]) -> None:
        """Run exactly the adapters in `weights` (adapter -> weight; empty: none)."""
        state = tuple(weights.items())
        if state == self.state:
            return
        names = list(weights)
        for layer in self.layers:
            if not names:
                layer.enable_adapters(False)
                continue
            present = [name for name in names if name in layer.scaling]
            layer.set_adapter(present, inference_mode=True)  # no grads: inference only
            for name in present:
                layer.set_scale(name, weights[name])
            layer._disable_adapters = False  # enable_adapters(True) would make them trainable again
        self.state = state
