"""Shared fixtures: tiny random-weight models, built once per test session."""

from __future__ import annotations

import pytest

from lib_multipass.tiny_models import TinyModels, build_tiny_models


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> TinyModels:
    return build_tiny_models(tmp_path_factory.mktemp("tiny-models"))


@pytest.fixture(scope="session")
def engine(tiny):
    """One engine for the session: loaded once, as the product does between jobs."""
    from lib_multipass.engines.diffusers import DiffusersEngine, load_pipeline
    from lib_multipass.masks.segmenters import ClipSegSegmenter

    pipe = load_pipeline(str(tiny.checkpoint), device="cpu")
    return DiffusersEngine(pipe, tiny.lora_dir, ClipSegSegmenter(str(tiny.segmenter)))


@pytest.fixture
def half_mask(tmp_path):
    """A user mask of a 96x64 job: a box in the left half, so the outcome does not depend on
    the random segmenter."""
    from PIL import Image

    mask = Image.new("L", (96, 64), 0)
    mask.paste(255, (10, 10, 40, 54))
    mask.save(tmp_path / "mask.png")
    return str(tmp_path / "mask.png")
