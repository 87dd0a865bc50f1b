"""The fast path's LoRA switching, on the CPU. Static scales give the plain engine's images bit
for bit (scale 0 adds exactly nothing); compiled (dynamo with its eager backend: the guards that
decide a recompile are inductor's), switching LoRAs between passes compiles nothing again."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from lib_multipass.engines.base import GenerateRequest
from lib_multipass.engines.diffusers import DiffusersEngine, load_pipeline
from lib_multipass.prompt import LoraTag
from lib_multipass.tiny_models import LORA_NAME

PLAIN = GenerateRequest("ohwx man", "", (), 5, 3, 7.0, "euler", 64, 64)
PASSES = [PLAIN, dataclasses.replace(PLAIN, loras=(LoraTag(LORA_NAME, 0.7),)), PLAIN,
          dataclasses.replace(PLAIN, loras=(LoraTag(LORA_NAME, 0.4),))]


def graphs() -> int:
    from torch._dynamo.utils import counters

    return counters["stats"]["unique_graphs"]


@pytest.fixture(scope="module")
def eager_images(tiny):
    plain = DiffusersEngine(load_pipeline(str(tiny.checkpoint), device="cpu"), tiny.lora_dir)
    return [np.asarray(plain.txt2img(request)) for request in PASSES]


def test_static_scales_give_the_plain_engines_images(tiny, eager_images):
    engine = DiffusersEngine(load_pipeline(str(tiny.checkpoint), device="cpu"), tiny.lora_dir)
    engine.loras.make_static()
    engine.check_loras([LORA_NAME])
    images = [np.asarray(engine.txt2img(request)) for request in PASSES]
    assert all(np.array_equal(a, b) for a, b in zip(images, eager_images))
    assert engine.loras.static and all(isinstance(s, torch.Tensor) for s in engine.loras.layers[0].scaling.values())


@pytest.mark.parametrize("static", [True, False])
def test_switching_loras_compiles_nothing_again(tiny, eager_images, static):
    torch._dynamo.reset()
    fast = DiffusersEngine(load_pipeline(str(tiny.checkpoint), device="cpu"), tiny.lora_dir)
    fast.enable_fast_path(mode=None, backend="eager")
    fast.loras.static = static  # False: the flag switching of the plain engine (the control)
    fast.check_loras([LORA_NAME])  # as the runner does before the base pass: the file is loaded
    images = [np.asarray(fast.txt2img(PASSES[0]))]
    compiled = graphs()
    images += [np.asarray(fast.txt2img(request)) for request in PASSES[1:]]
    assert compiled > 0
    if static:
        assert graphs() == compiled  # LoRA off, on at 0.7, off, on at 0.4: one compile
    else:
        assert graphs() > compiled  # peft's flags are in the graph's guards
    # channels-last convolutions round differently: within a level of the plain engine
    assert all(np.abs(a.astype(int) - b).max() <= 1 for a, b in zip(images, eager_images))
    assert not np.array_equal(images[0], images[1]) and not np.array_equal(images[1], images[3])


def test_the_unets_output_leaves_the_cuda_graphs_memory():
    """With CUDA graphs the next replay overwrites the last output: the engine hands out copies."""
    from diffusers.models.unets.unet_2d_condition import UNet2DConditionOutput

    from lib_multipass.engines.diffusers import _own

    sample = torch.ones(1, 4, 8, 8)
    as_tuple, as_output = _own((sample,)), _own(UNet2DConditionOutput(sample=sample))
    sample.zero_()  # the graph's next replay
    assert as_tuple[0].eq(1).all() and as_output.sample.eq(1).all()
