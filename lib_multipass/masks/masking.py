"""The mask stage: segmentation, then small pure operations on numpy masks (DESIGN.md §4).

Order: probability map -> threshold -> drop specks -> split into subjects (or people first,
masks/people.py) -> edges redrawn (SAM, when there) -> minus mask_negative -> drop specks ->
dilate/erode -> invert -> feather. A user mask image replaces segmentation.
Masks are `bool` arrays (H, W); the paste-back alpha is `float32` in 0..1.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
from PIL import Image

from ..faces.detect import Face
from ..images import open_image
from ..plan import MaskSpec
from . import people
from .crop import Box
from .segmenters import PERSON_TERMS

log = logging.getLogger(__name__)


class Segment(Protocol):
    def __call__(self, image: Image.Image, terms: Sequence[str], box: Box | None = None) -> np.ndarray:
        """The probability map of `terms` on the crop `box` of the image (None: all of it)."""


# -- pure operations ----------------------------------------------------------------------


def threshold(prob: np.ndarray, cut: float) -> np.ndarray:
    """Pixels whose probability reaches `cut`."""
    return np.asarray(prob) >= cut


def subtract(prob: np.ndarray, negative: np.ndarray | None) -> np.ndarray:
    """The probability map minus the negative one, clipped to 0..1."""
    if negative is None:
        return prob
    return np.clip(prob - negative, 0.0, 1.0).astype(np.float32)


def dilate(mask: np.ndarray, pixels: int) -> np.ndarray:
    """Grow the mask by `pixels` (a disc), or shrink it when negative.

    Through the Euclidean distance transform: time and memory do not grow with the radius
    (an elliptical kernel of radius 99999 wanted 40 GB)."""
    if pixels == 0 or not mask.any():
        return mask.copy()
    if pixels > 0:
        outside = np.ascontiguousarray(~mask, dtype=np.uint8)
        return cv2.distanceTransform(outside, cv2.DIST_L2, cv2.DIST_MASK_PRECISE) <= pixels
    inside = np.pad(mask, 1).astype(np.uint8)  # the border counts as background: edges shrink too
    return cv2.distanceTransform(inside, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1] > -pixels


def invert(mask: np.ndarray) -> np.ndarray:
    return ~mask


def feather(mask: np.ndarray, blur: int) -> np.ndarray:
    """Paste-back alpha: a Gaussian of `blur` px whose reach stays within `blur` px of the mask."""
    alpha = mask.astype(np.float32)
    if blur <= 0 or not mask.any():
        return alpha
    size = 2 * blur + 1
    blurred = cv2.GaussianBlur(alpha, (size, size), sigmaX=blur / 2.0, borderType=cv2.BORDER_REPLICATE)
    return np.clip(blurred, 0.0, 1.0)


def gray_image(values: np.ndarray) -> Image.Image:
    """A 0..1 map (alpha, probability) as an 8-bit grey image."""
    return Image.fromarray(np.rint(np.clip(values, 0, 1) * 255).astype(np.uint8), "L")


def area(mask: np.ndarray) -> float:
    """Fraction of the image the mask covers."""
    return float(np.count_nonzero(mask)) / mask.size if mask.size else 0.0


def remove_specks(mask: np.ndarray, min_fraction: float) -> np.ndarray:
    """Drop connected parts smaller than `min_fraction` of the image."""
    if min_fraction <= 0 or not mask.any():
        return mask.copy()
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    keep = np.zeros(count, bool)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= min_fraction * mask.size
    return keep[labels]


def split_instances(mask: np.ndarray, gap: float = 0.03, overlap: float = 0.5) -> list[np.ndarray]:
    """Subjects of the mask, left to right by their left edge.

    Fragments of one subject are merged: parts closer than `gap` of the short side, and
    parts stacked vertically (horizontal extents overlapping by `overlap` of the narrower),
    as when a mask negative cuts a person at the belt.
    """
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count <= 2:
        return [labels == 1] if count == 2 else []
    parent = list(range(count))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    reach = max(1, int(round(gap * min(mask.shape) / 2)))
    near = cv2.connectedComponents(dilate(mask, reach).astype(np.uint8), connectivity=8)[1]
    boxes = [(stats[i, cv2.CC_STAT_LEFT], stats[i, cv2.CC_STAT_LEFT] + stats[i, cv2.CC_STAT_WIDTH]) for i in range(count)]
    first_pixel = np.unique(labels.ravel(), return_index=True)[1]
    group_of = near.ravel()[first_pixel]
    for a in range(1, count):
        for b in range(a + 1, count):
            shared = min(boxes[a][1], boxes[b][1]) - max(boxes[a][0], boxes[b][0])
            narrower = min(boxes[a][1] - boxes[a][0], boxes[b][1] - boxes[b][0])
            if group_of[a] == group_of[b] or shared >= overlap * narrower:
                parent[root(b)] = root(a)
    groups: dict[int, list[int]] = {}
    for i in range(1, count):
        groups.setdefault(root(i), []).append(i)
    parts = [np.isin(labels, members) for members in groups.values()]
    return sorted(parts, key=lambda part: int(np.nonzero(part.any(axis=0))[0][0]))


def mask_from_image(image: Image.Image) -> np.ndarray:
    """Where the user painted: the alpha channel when it is used, else brightness >= 50 %."""
    if image.mode == "P":
        image = image.convert("RGBA")
    if "A" in image.getbands():
        alpha = np.asarray(image.getchannel("A"))
        if alpha.min() < 255:
            return alpha >= 128
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        values = np.asarray(image, np.float64)
        top = values.max()
        return values >= top / 2 if top > 0 else np.zeros(values.shape, bool)
    return np.asarray(image.convert("L")) >= 128


def load_mask_image(path: str | Path, size: tuple[int, int]) -> tuple[np.ndarray, list[str]]:
    """A user mask from a PNG/JPEG of any mode, at `size` (w, h), and notes on what was done."""
    mask = mask_from_image(open_image(path, "mask image"))
    notes: list[str] = []
    if mask.shape[::-1] != size:
        notes.append(f"mask image {mask.shape[1]}x{mask.shape[0]} resized to the image size {size[0]}x{size[1]}")
        scaled = Image.fromarray(mask.astype(np.uint8) * 255).resize(size, Image.Resampling.BILINEAR)
        mask = np.asarray(scaled) >= 128
    return mask, notes


# -- from a probability map to the masks of the passes ------------------------------------


@dataclass(frozen=True)
class PassMask:
    """The mask of one person pass: `mask` is what is regenerated, `alpha` what is pasted."""

    mask: np.ndarray
    alpha: np.ndarray


def subject_mask(prob: np.ndarray, negative: np.ndarray | None, spec: MaskSpec) -> np.ndarray:
    """Subtract the negative map, threshold, drop specks."""
    return remove_specks(threshold(subtract(prob, negative), spec.threshold), spec.speck)


#: the most pixels people are looked for in (`working_copy`)
WORK_PIXELS = 1 << 19


def working_copy(image: Image.Image) -> Image.Image:
    """`image` scaled down to at most WORK_PIXELS (or itself). The face and pose models look
    over tiles counted in pixels, made on bench-masks' frames of 0.26-0.52 MP: in a 3072 px
    image a close face no longer fits them (its two men, both found at 768 px: none at 3072,
    in 13 s), and the stage's time grows with the pixels (a wide street 1.4 s at 768 px, 13 s
    at 3072)."""
    pixels = image.width * image.height
    if pixels <= WORK_PIXELS:
        return image
    scale = math.sqrt(WORK_PIXELS / pixels)
    return image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                        Image.Resampling.BILINEAR, reducing_gap=2.0)


def resized(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A map at `size` (w, h), as float32, bilinear; itself when it has that size."""
    if array.shape[::-1] == size:
        return array
    return cv2.resize(array.astype(np.float32), size, interpolation=cv2.INTER_LINEAR)


def scaled(box: Box, sx: float, sy: float) -> Box:
    return round(box[0] * sx), round(box[1] * sy), round(box[2] * sx), round(box[3] * sy)


def full_size(person: people.Person, size: tuple[int, int]) -> people.Person:
    """A person found in the working copy, at the image's `size` (w, h): the mask scaled
    bilinearly and cut at half, the map bilinearly. Their face box stays the copy's: nothing
    after the search reads it."""
    mask = resized(person.mask, size) >= 0.5
    return people.Person(mask, np.where(mask, resized(person.prob, size), 0.0).astype(np.float32), person.face)


def place(box: Box) -> str:
    return f"x {box[0]}-{box[2]}, y {box[1]}-{box[3]}"


WHOLE_MAP = "the mask is the segmenter's map of the whole image"
NOBODY = "nothing is in-painted (give a mask image, or turn mask_person_check off for the segmenter's map)"


@dataclass(frozen=True)
class Subjects:
    """What the mask prompt found: the probability map, all subjects, and each one."""

    prob: np.ndarray
    mask: np.ndarray
    instances: list[np.ndarray]
    notes: list[str]  # what was left out, for the job's warnings


def find_subjects(segment: Segment, image: Image.Image, spec: MaskSpec,
                  detect_faces: Callable[[Image.Image, Box | None], list[Face]] | None = None,
                  refine: Callable[[Image.Image, list[np.ndarray]], list[np.ndarray]] | None = None,
                  find_body: Callable[[Image.Image, Box], Face | None] | None = None,
                  detect_subjects: Callable[[Image.Image, Sequence[str]], list[Box]] | None = None,
                  person_check: bool = True) -> Subjects:
    """The subjects of `spec`'s mask prompt minus its negative, each one apart, left to right.

    People (person terms, with a face detector) are found first and segmented one by one
    (masks/people.py). `person_check` (`mask_person_check`) is the rule that a person mask
    needs a face, a body (`find_body`) or a detector's box: a part with none of them is no
    person (reported in the notes, never in-painted). Without it (or with nothing to check
    by: no body finder, no detector) a person prompt where no face is found is the
    segmenter's map of the whole image, and `find_body` is not used. Other prompts are
    segmented on the whole image and split into parts. `detect_subjects` (a detector,
    masks/detector.py) boxes each subject of the prompt first: each box is segmented alone
    and bounds its subject's mask; with no box, the segmenter's map is used as without it,
    except for a person prompt with the check and no face either: then nothing is (a bird or
    a tree is no person). `refine` (SAM) redraws each subject's edges before the negative is
    taken out, so it cannot draw the clothes back in. `find_body` also tells, whatever the
    check, where a face's person stands whole, so that their mask reaches the feet.
    """
    prob = segment(image, spec.prompt)
    negative = segment(image, spec.negative) if spec.negative else None
    notes: list[str] = []
    found: list[people.Person] = []
    checked = False  # every part was looked at for a face and a body: none is a person
    boxes = detect_subjects(image, spec.prompt) if detect_subjects is not None else []
    unboxed = f"the subject detector found no {' | '.join(spec.prompt)!r}"
    if detect_faces is not None and all(term.lower() in PERSON_TERMS for term in spec.prompt):
        work = working_copy(image)  # people are looked for at most WORK_PIXELS large, then scaled back
        sx, sy = work.width / image.width, work.height / image.height
        # a body alone makes a person only without a detector (a part it did not box needs a face:
        # a pose found on a motorbike's fork is no person); pose finds where legs end either way
        by_body = find_body is not None and detect_subjects is None and person_check
        found, faceless = people.find_people(
            functools.partial(segment, work, spec.prompt), lambda box: detect_faces(work, box), work,
            resized(prob, work.size), spec.speck, spec.threshold, find_body if by_body else None,
            [scaled(box, sx, sy) for box in boxes], find_body)
        found = [full_size(person, image.size) for person in found]
        checked = by_body or (person_check and detect_subjects is not None)
        if faceless and (found or by_body):
            places = "; ".join(place(scaled(box, 1 / sx, 1 / sy)) for box in faceless)  # in the image's pixels
            notes.append(f"left out what the segmenter took for a person at {places}: no "
                         f"{'face or body' if by_body else 'face'} found there (give a mask image to include it)")
        if not found and not boxes and detect_subjects is not None:
            notes.append(f"{unboxed} and no face was found: {NOBODY if checked else WHOLE_MAP}")
        elif not found and not checked:
            log.info("no face found: the person mask is the segmenter's map of the whole image")
    elif boxes:
        crop = functools.partial(segment, image, spec.prompt)  # the prompt's map of a crop
        found = people.ordered(people.from_boxes(crop, image, boxes, spec.threshold), image, spec.speck)
    elif detect_subjects is not None:
        notes.append(f"{unboxed}: {WHOLE_MAP}")
    if found or checked:
        parts, maps = [p.mask for p in found], [p.prob for p in found]
        prob = np.max(maps, axis=0) if maps else np.zeros_like(prob)
    else:
        parts = split_instances(remove_specks(threshold(prob, spec.threshold), spec.speck))
        maps = [prob] * len(parts)
    if refine is not None and parts:
        parts = refine(image, parts)
    instances = [mask for mask in (minus_negative(part, own, negative, spec) for part, own in zip(parts, maps))
                 if mask.any()]
    return Subjects(prob, np.any(instances, axis=0) if instances else np.zeros(prob.shape, bool), instances, notes)


def minus_negative(mask: np.ndarray, prob: np.ndarray, negative: np.ndarray | None, spec: MaskSpec) -> np.ndarray:
    """`mask` without what the negative takes out (where the probability minus the negative's
    falls below the threshold, or, on pixels a refiner added, the negative's reaches it),
    then without specks."""
    if negative is not None:
        added = mask & (prob < spec.threshold)
        mask = mask & ((prob - negative >= spec.threshold) | (added & (negative < spec.threshold)))
    return remove_specks(mask, spec.speck)


def pass_mask(subjects: np.ndarray, spec: MaskSpec, instances: list[np.ndarray] | None = None) -> np.ndarray | None:
    """Pick the pass's instance, then dilate and invert; None when that subject is absent.

    `instances`: `split_instances(subjects)` when the caller has it already (several passes).
    """
    mask = subjects
    if spec.instance is not None:
        instances = split_instances(subjects) if instances is None else instances
        if spec.instance >= len(instances):
            return None
        mask = instances[spec.instance]
    mask = dilate(mask, spec.dilate.pixels(min(mask.shape)))
    return invert(mask) if spec.invert else mask


def finish(mask: np.ndarray, spec: MaskSpec) -> PassMask:
    return PassMask(mask, feather(mask, spec.blur))
