"""Mask quality on real photos that ship with scikit-image, against hand-traced references.

The offline person segmenter (mediapipe's selfie segmentation, weights inside its wheel)
stands in for CLIPSeg, whose real weights cannot be downloaded here.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from photos import two_people
from PIL import Image, ImageDraw
from skimage import data

from lib_multipass.engines.recording import RecordingEngine
from lib_multipass.masks import masking
from lib_multipass.masks.segmenters import SelfieSegmenter
from lib_multipass.options import MultipassOptions
from lib_multipass.plan import Generation, make_plan, mask_spec
from lib_multipass.prompt import parse
from lib_multipass.runner import run

DATA = Path(__file__).parent / "data"
SPEC = mask_spec(MultipassOptions(), None)  # the default op chain


def reference(name: str, scale: float = 1.0, offset: tuple[int, int] = (0, 0), flip: bool = False,
              size: tuple[int, int] = (512, 512)) -> np.ndarray:
    polygons = json.loads((DATA / f"{name}_person.json").read_text())["polygons"]
    mask = Image.new("L", size, 0)
    for polygon in polygons:
        points = [((511 - x if flip else x) * scale + offset[0], y * scale + offset[1]) for x, y in polygon]
        ImageDraw.Draw(mask).polygon(points, fill=255)
    return np.asarray(mask) > 0


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


@pytest.fixture(scope="module")
def segmenter():
    return SelfieSegmenter()


@pytest.mark.parametrize("name", ["astronaut", "camera"])
def test_person_mask_matches_the_hand_traced_reference(segmenter, name):
    image = Image.fromarray(getattr(data, name)()).convert("RGB")
    prob = segmenter.probabilities(image, ["person"])
    final = masking.pass_mask(masking.subject_mask(prob, None, SPEC), SPEC)
    assert iou(final, reference(name)) >= 0.85


def test_two_people_become_two_instances_left_to_right(segmenter):
    image = two_people()
    subjects = masking.subject_mask(segmenter.probabilities(image, ["person"]), None, SPEC)
    left, right = masking.split_instances(subjects)
    scale = 448 / 512
    # 0.8, not 0.85: at this size the segmenter takes the flag beside the left person for her
    assert iou(left, reference("astronaut", scale, (16, 64), size=(1024, 512))) >= 0.8
    assert iou(right, reference("astronaut", scale, (560, 64), flip=True, size=(1024, 512))) >= 0.85


def test_each_person_prompt_gets_its_own_subject(segmenter):
    engine = RecordingEngine({"person": lambda image: segmenter.probabilities(two_people(), ["person"])})
    plan = make_plan(parse("beach BREAK photo BREAK man BREAK woman"), MultipassOptions(),
                     Generation(seed=1, steps=4, width=1024, height=512))
    run(plan, engine)
    first, second = engine.requests[-2:]
    assert first.generate.prompt == "man, photo" and second.generate.prompt == "woman, photo"
    assert first.mask[:, :512].sum() > 0.99 * first.mask.sum()
    assert second.mask[:, 512:].sum() > 0.99 * second.mask.sum()


def test_mask_negative_and_invert_on_a_real_photo(segmenter):
    image = Image.fromarray(data.astronaut())
    prob = segmenter.probabilities(image, ["person"])
    lower = np.zeros_like(prob)
    lower[256:] = 1.0  # as if "clothes" were found in the lower half
    spec = mask_spec(MultipassOptions.from_dict({"mask_invert": True, "mask_dilate": 0}), None)
    kept = ~masking.pass_mask(masking.subject_mask(prob, lower, spec), spec)
    person = reference("astronaut")
    assert iou(kept, person & (np.arange(512)[:, None] < 256)) >= 0.85
