"""People first, then each person's mask in a crop that suits them.

A segmenter reading a whole wide shot sees a person of 12 % of the frame as a few of its
input pixels, and reads large flowers or grass as people. So: find the people (faces from a
tiled detector, and the segmenter's own look at the whole image for people whose face is
not seen), then segment each one in a square crop around them, at the segmenter's own
resolution, and map it back exactly. Each person is bounded by their crop, so nothing far
from a person is marked; people who touch are told apart by a watershed from each one's own
pixels and face.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from ..faces.detect import Face

#: a region this tall or taller has a face the detector finds (20 px, a person 8 faces tall):
#: without one it is not taken for a person (a cat, a cup, a flower the segmenter misreads)
FACELESS_MAX_HEIGHT = 160
Box = tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive)
Segment = Callable[[Image.Image], np.ndarray]  # an image -> its (H, W) probability map
CROP_MARGIN = 0.15  # of the person's longer side, each way: the crop the mask is made in


@dataclass(frozen=True)
class Person:
    mask: np.ndarray  # (H, W) bool
    prob: np.ndarray  # (H, W) float32, 0 outside the person's crop
    face: Face | None


def box_of(mask: np.ndarray) -> Box | None:
    ys, xs = np.nonzero(mask)
    if not len(xs):
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def square_crop(box: Box, size: tuple[int, int], margin: float = CROP_MARGIN) -> Box:
    """A square around `box` with `margin` of its longer side each way, moved (not cut) to
    stay inside the image; cut only where the image is smaller than the square."""
    width, height = size
    x0, y0, x1, y1 = box
    side = round(max(x1 - x0, y1 - y0) * (1 + 2 * margin))
    side_x, side_y = min(side, width), min(side, height)
    left = min(max(0, round((x0 + x1 - side_x) / 2)), width - side_x)
    top = min(max(0, round((y0 + y1 - side_y) / 2)), height - side_y)
    return left, top, left + side_x, top + side_y


def body_box(face: Face, size: tuple[int, int]) -> Box:
    """Where a face's body can be: 2.5 faces each side, 8 faces down (a standing person)."""
    x0, y0, x1, y1 = face.box
    s = max(x1 - x0, y1 - y0)
    cx = (x0 + x1) / 2
    return (max(0, round(cx - 2.5 * s)), max(0, round(y0 - 0.6 * s)), min(size[0], round(cx + 2.5 * s)),
            min(size[1], round(y1 + 7 * s)))


def segment_in(segment: Segment, image: Image.Image, crop: Box) -> np.ndarray:
    """The segmenter's map of `crop`, placed in a full-size map (0 elsewhere)."""
    x0, y0, x1, y1 = crop
    out = np.zeros((image.height, image.width), np.float32)
    out[y0:y1, x0:x1] = segment(image.crop(crop))
    return out


def touching(mask: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """The connected parts of `mask` that meet `seed`."""
    count, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    hit = np.unique(labels[seed & mask])
    return np.isin(labels, hit[hit > 0]) if count > 1 else mask


def refine(segment: Segment, image: Image.Image, seed: np.ndarray, box: Box, cut: float) -> tuple[np.ndarray, np.ndarray]:
    """(mask, prob) of the person at `seed`, segmented in a square crop around `box`."""
    prob = segment_in(segment, image, square_crop(box, image.size))
    mask = touching(prob >= cut, seed)
    return mask, np.where(mask, prob, 0.0).astype(np.float32)


def from_face(segment: Segment, image: Image.Image, face: Face, cut: float) -> Person | None:
    """Segment where the face's body can be, then again in a crop fitted to what was found.

    The seed is the face and the neck and chest below it: a face behind a camera, a phone or
    hair is not marked by every segmenter, the chest is."""
    x0, y0, x1, y1 = face.box
    s = max(x1 - x0, y1 - y0)
    seed = np.zeros((image.height, image.width), bool)
    seed[y0 : y1 + 2 * s, max(0, (x0 + x1) // 2 - s // 2) : (x0 + x1) // 2 + s // 2 + 1] = True
    first, _ = refine(segment, image, seed, body_box(face, image.size), cut)
    box = box_of(first)
    if box is None:
        return None
    mask, prob = refine(segment, image, first, box, cut)
    return Person(mask, prob, face) if mask.any() else None


def from_region(segment: Segment, image: Image.Image, region: np.ndarray, cut: float) -> Person | None:
    box = box_of(region)
    if box is None:
        return None
    mask, prob = refine(segment, image, region, box, cut)
    return Person(mask, prob, None) if mask.any() else None


def separate(image: Image.Image, people: Sequence[Person]) -> list[np.ndarray]:
    """Each person's own pixels where masks overlap (people who touch): a watershed on the
    image from what only that person holds, plus their face and the strip below it."""
    masks = [p.mask for p in people]
    if len(masks) < 2:
        return list(masks)
    claims = np.sum(masks, axis=0)
    if claims.max() <= 1:
        return list(masks)
    markers = np.zeros(claims.shape, np.int32)
    markers[claims == 0] = 1
    for i, person in enumerate(people, start=2):
        own = person.mask & (claims == 1)
        if person.face is not None:
            x0, y0, x1, y1 = person.face.box
            inner = max(1, (x1 - x0) // 4)
            own = own.copy()
            own[y0:, x0 + inner : x1 - inner] |= person.mask[y0:, x0 + inner : x1 - inner]
        markers[own] = i
    pixels = cv2.cvtColor(np.asarray(image.convert("RGB")), cv2.COLOR_RGB2BGR)
    labels = cv2.watershed(np.ascontiguousarray(pixels), markers)
    union = claims > 0
    out = []
    for i, person in enumerate(people, start=2):
        own = (labels == i) & union
        out.append(touching(own, markers == i) if own.any() else own)
    return out


def find_people(segment: Segment, image: Image.Image, faces: Sequence[Face], min_area: float, cut: float = 0.5) -> list[Person]:
    """Every person: one per face whose body the segmenter finds, and one per part of the
    whole-image map that no such person holds; smaller than `min_area` of the image: dropped."""
    people: list[Person] = []
    for face in sorted(faces, key=lambda f: -f.score):
        person = from_face(segment, image, face, cut)
        if person is not None:
            people.append(person)
    whole = segment(image) >= cut
    taken = np.any([p.mask for p in people], axis=0) if people else np.zeros(whole.shape, bool)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(whole.astype(np.uint8), connectivity=8)
    for label in range(1, count):
        part = labels == label
        if stats[label, cv2.CC_STAT_AREA] < min_area * whole.size or (part & taken).sum() > 0.3 * part.sum():
            continue
        if stats[label, cv2.CC_STAT_HEIGHT] >= FACELESS_MAX_HEIGHT:
            continue
        person = from_region(segment, image, part & ~taken, cut)
        if person is not None:
            people.append(person)
    masks = separate(image, people)
    kept = [Person(mask, np.where(mask, p.prob, 0.0).astype(np.float32), p.face)
            for p, mask in zip(people, masks) if mask.sum() >= min_area * mask.size]
    return sorted(kept, key=lambda p: int(np.nonzero(p.mask.any(axis=0))[0][0]))
