"""Faces: real detection on real photos, face-shaped masks, assignment to persons, the face pass."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from photos import two_people
from PIL import Image
from skimage import data

from lib_multipass.engines.recording import RecordingEngine
from lib_multipass.face_passes import face_request
from lib_multipass.faces.detect import Face, MediaPipeFaceDetector, assign_faces, ellipse_mask, face_mask, select_faces
from lib_multipass.options import MultipassOptions
from lib_multipass.parallel import PerThread
from lib_multipass.plan import Generation, make_plan
from lib_multipass.prompt import parse
from lib_multipass.runner import run

# hand-made reference boxes (x0, y0, x1, y1): brows/hairline to chin, the ear left out
ASTRONAUT_FACE = (178, 72, 272, 172)
CAMERA_FACE = (200, 112, 258, 198)


def iou(a, b) -> float:
    w = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / union


@pytest.mark.parametrize("name, reference", [("astronaut", ASTRONAUT_FACE), ("camera", CAMERA_FACE)])
def test_faces_found_where_the_reference_box_is(name, reference):
    image = Image.fromarray(getattr(data, name)()).convert("RGB")
    faces = MediaPipeFaceDetector().detect(image)
    assert len(faces) == 1 and iou(faces[0].box, reference) >= 0.6


def test_both_faces_of_two_people_and_masks_inside_their_boxes():
    image = two_people()
    faces = sorted(MediaPipeFaceDetector().detect(image), key=lambda f: f.box[0])
    s = 448 / 512
    left = tuple(int(v * s) + o for v, o in zip(ASTRONAUT_FACE, (16, 64, 16, 64)))
    x0, y0, x1, y1 = ASTRONAUT_FACE
    right = (int((511 - x1) * s) + 560, int(y0 * s) + 64, int((511 - x0) * s) + 560, int(y1 * s) + 64)
    assert len(faces) == 2 and iou(faces[0].box, left) >= 0.6 and iou(faces[1].box, right) >= 0.6
    for face, (bx0, by0, bx1, by1) in zip(faces, (left, right)):
        mask = face_mask(image, face)
        assert mask.sum() > 0.5 * (bx1 - bx0) * (by1 - by0)
        # the face shape (hairline to chin) stays in the hand-made face box: no hair, no background
        assert mask[by0:by1, bx0:bx1].sum() >= 0.95 * mask.sum()


class BrightSquareModel:
    """A stand-in for one of mediapipe's face models: 'finds' each white square in the pixels it
    is given (as mediapipe answers: relative box, score list) with a fixed score, or nothing;
    a square cut by the crop's edge, or smaller than `least` of the crop (the model reads 128 px:
    a small face is seen only in a small crop), is no face. Remembers the size of each crop."""

    def __init__(self, score: float | None, least: float = 0.0):
        self.score = score
        self.least = least
        self.looks: list[tuple[int, int]] = []

    def process(self, pixels: np.ndarray):
        from types import SimpleNamespace as NS

        h, w = pixels.shape[:2]
        self.looks.append((w, h))
        count, _, stats, _ = cv2.connectedComponentsWithStats((pixels.min(axis=2) == 255).astype(np.uint8))
        found = []
        for x, y, bw, bh, _ in stats[1:count]:
            if self.score is not None and x > 0 and y > 0 and x + bw < w and y + bh < h and bw >= self.least * w:
                box = NS(xmin=x / w, ymin=y / h, width=bw / w, height=bh / h)
                found.append(NS(score=[self.score], location_data=NS(relative_bounding_box=box)))
        return NS(detections=found or None)


@pytest.mark.parametrize("full_range_score, kept", [(0.9, True), (0.75, False), (None, False)])
def test_a_large_face_the_short_range_model_is_unsure_of_needs_the_full_range_model(full_range_score, kept):
    """A profile (Zidane's, in bench-masks' real photos) scores 0.7-0.8 with the short-range
    model, like a texture: it is a face when the full-range model finds it too, sure of it."""
    pixels = np.zeros((512, 512, 3), np.uint8)
    pixels[200:290, 150:240] = 255  # a 90 px "face"
    detector = MediaPipeFaceDetector()
    short_range, full_range = BrightSquareModel(0.75), BrightSquareModel(full_range_score)
    detector._short_range, detector._full_range = PerThread(lambda: short_range), PerThread(lambda: full_range)
    faces = detector.detect(Image.fromarray(pixels))
    assert [iou(f.box, (150, 200, 240, 290)) > 0.9 for f in faces] == ([True] if kept else [])


def test_the_small_tiles_look_for_the_faces_of_a_wide_shot_only():
    """Faces of 10-20 px (the 64 px tiles: 345 of the model's looks at 768x512, most of the
    face search's time) are looked for where no face of 40 px or more was found: beside a close
    subject they are bystanders, not the subjects of person prompts."""
    pixels = np.zeros((512, 768, 3), np.uint8)
    pixels[400:414, 600:614] = 255  # a 14 px "face"
    detector = MediaPipeFaceDetector()
    model = BrightSquareModel(0.9, least=0.15)
    detector._short_range = detector._full_range = PerThread(lambda: model)
    far = detector.detect(Image.fromarray(pixels))
    assert [f.box for f in far] == [(600, 400, 614, 414)]
    assert (64, 64) in model.looks
    pixels[100:190, 150:240] = 255  # and a close subject's 90 px face
    model.looks.clear()
    close = detector.detect(Image.fromarray(pixels))
    assert [f.box for f in close] == [(150, 100, 240, 190)]
    assert (64, 64) not in model.looks


def test_close_faces_of_a_large_image_are_found_where_the_small_one_has_them():
    """A hires pass or a phone's photo: faces of 450 px in a 5120 px image fit no 384 px tile
    and are 11 px to the model in the whole image (none was found). Tiles three times as large,
    up to the image's size, find them."""
    image = two_people()
    big = image.resize((image.width * 5, image.height * 5), Image.Resampling.BICUBIC)
    detector = MediaPipeFaceDetector()
    small = sorted(detector.detect(image), key=lambda f: f.box[0])
    faces = sorted(detector.detect(big), key=lambda f: f.box[0])
    assert len(small) == len(faces) == 2
    assert all(iou(f.box, tuple(5 * v for v in s.box)) >= 0.6 for f, s in zip(faces, small))
    assert detector.tile_sides(768, 512) == [64, 128, 384, 768]  # the sizes it was made on: as before


def test_ellipse_mask_fallback_is_inside_the_box():
    mask = ellipse_mask(Face((10, 20, 50, 70), 1.0), (100, 100))
    ys, xs = np.nonzero(mask)
    assert xs.min() >= 10 and xs.max() < 51 and mask.sum() > 0.5 * 40 * 50


def test_select_and_assign_faces():
    faces = [Face((10, 10, 30, 30), 0.9), Face((60, 10, 100, 50), 0.9), Face((200, 10, 210, 20), 0.9),
             Face((150, 150, 190, 190), 0.9)]
    kept = select_faces(faces, min_size=15, max_faces=3)
    assert [f.box[0] for f in kept] == [60, 150, 10]  # largest first; the 10 px face dropped
    left, right = np.zeros((256, 256), bool), np.zeros((256, 256), bool)
    left[:, :50] = True
    right[:, 55:120] = True
    groups = assign_faces(kept, [left, right, None])
    assert [[f.box[0] for f in g] for g in groups] == [[10], [60], []]  # (150, 150) is on nobody


def test_runner_paints_each_face_with_its_persons_prompt_and_lora():
    prob = np.zeros((64, 96), np.float32)
    prob[:, :40] = 0.9
    prob[:, 56:] = 0.9
    faces = [Face((10, 8, 30, 28), 0.9), Face((66, 8, 86, 28), 0.9), Face((44, 40, 54, 50), 0.9)]
    engine = RecordingEngine({"person": prob}, loras=("a", "b"), faces=faces)
    options = MultipassOptions.from_dict({"inpaint_faces": True, "face_min_size": 8, "mask_dilate": 0,
                                          "face_denoising_strength": 0.3})
    plan = make_plan(parse("scene BREAK photo BREAK man <lora:a> BREAK woman <lora:b>"), options,
                     Generation(seed=10, steps=4, width=96, height=64))
    result = run(plan, engine)
    face_requests = [r for r in engine.requests if hasattr(r, "denoise") and r.denoise == 0.3]
    assert [r.generate.prompt for r in face_requests] == ["man, photo", "woman, photo"]
    assert [[lora.name for lora in r.generate.loras] for r in face_requests] == [["a"], ["b"]]
    assert list(result.images)[-2:] == ["person_1_face_1", "person_2_face_1"]
    assert not face_requests[0].mask[40:50, 44:54].any()  # the face on nobody is left alone


def test_one_segment_prompt_inpaints_faces_with_its_own_lora():
    engine = RecordingEngine(loras=("a",), faces=[Face((10, 10, 50, 50), 0.9)])
    plan = make_plan(parse("portrait of ohwx man <lora:a:0.8>"), MultipassOptions.from_dict({"inpaint_faces": True}),
                     Generation(seed=1, steps=4, width=64, height=64))
    # a one-segment prompt is a plain pass: the base keeps its LoRA, as the host would run it
    assert [p.kind for p in plan.passes] == ["base", "faces"] and [lora.name for lora in plan.base.loras] == ["a"]
    result = run(plan, engine)
    assert engine.requests[-1].generate.loras[0].name == "a" and "faces_face_1" in result.images


def test_no_face_found_is_a_warning():
    engine = RecordingEngine()
    plan = make_plan(parse("a forest"), MultipassOptions.from_dict({"inpaint_faces": True}),
                     Generation(seed=1, steps=4, width=64, height=64))
    result = run(plan, engine)
    assert list(result.images) == ["base"] and "no face" in result.warnings[0]


def test_face_pass_on_tiny_models_changes_only_the_face(engine):
    photo = Image.fromarray(data.astronaut()).resize((256, 256))
    face = MediaPipeFaceDetector().detect(photo)[0]
    plan = make_plan(parse("portrait of a woman"), MultipassOptions.from_dict({"inpaint_faces": True}),
                     Generation(seed=2, steps=4, width=64, height=64, sampler="euler"))
    request = face_request(plan.passes[1], photo, face, 1)
    out = np.asarray(engine.inpaint(request)).astype(int)
    before = np.asarray(photo).astype(int)
    assert np.array_equal(out[request.alpha == 0], before[request.alpha == 0])
    core = request.alpha > 0.99
    assert core.any() and np.abs(out[core] - before[core]).mean() > 1
    x0, y0, x1, y1 = (v // 2 for v in ASTRONAUT_FACE)  # the reference face box at 256 px
    reach = face.size // 20 + max(2, face.size // 16)  # the mask's dilation and feather
    touched = request.alpha > 0
    inside = touched[y0 - reach:y1 + reach, x0 - reach:x1 + reach].sum()
    assert inside >= 0.95 * touched.sum()  # the face pass stays on the face
