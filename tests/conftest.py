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
