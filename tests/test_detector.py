"""The subject detector (masks/detector.py) and the box path of the mask stage: each subject
boxed first, segmented alone in its box. The detector's weights cannot be had here: its wiring
runs on tiny random OWL-ViT/OWLv2 weights; what boxes do to masks is measured with true boxes
on real cut-outs pasted onto real photos (exact truth)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lib_multipass.errors import ModelNotFoundError
from lib_multipass.faces.detect import Face, MediaPipeFaceDetector, box_iou, faces_in
from lib_multipass.masks import detector, detector_choice, hub, masking
from lib_multipass.masks.crop import mask_box
from lib_multipass.masks.detector import Detection, SubjectDetector
from lib_multipass.masks.segmenters import SelfieSegmenter
from lib_multipass.options import MultipassOptions
from lib_multipass.plan import mask_spec
from lib_multipass.standalone.mask import segment_with

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from mask_scenes import FRAMES, backgrounds, compose, cutouts  # noqa: E402
from test_people import map_of, segment_of  # noqa: E402

SPEC = mask_spec(MultipassOptions(), None)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def noise(width: int, height: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8))


# -- pure parts ---------------------------------------------------------------------------


def test_looks_are_the_whole_image_and_tiles_of_half_its_short_side_where_the_model_needs_them():
    views = detector.looks(512, 512, patches=24)  # OWL-ViT B/32 at 768 px
    assert views[0] == (0, 0, 512, 512)
    assert {(w, h) for _, _, w, h in views[1:]} == {(256, 256)} and len(views) == 1 + 9
    assert detector.looks(512, 512, patches=60) == [(0, 0, 512, 512)]  # OWLv2 B/16 at 960 px sees them whole
    panorama = detector.looks(1152, 448, patches=24)
    assert all(w == h == 448 for _, _, w, h in panorama[:4])  # squares along it, never stretched
    assert all(x + w <= 1152 and y + h <= 448 for x, y, w, h in panorama)


def test_person_words_that_name_nothing_visible_are_asked_as_person():
    assert detector.detector_terms(["foreground", "subject", "person", "woman", "red bottle"]) == [
        "person", "woman", "red bottle"]


def test_a_box_cut_by_a_tiles_inner_edge_is_dropped_but_not_one_on_the_images_edge():
    tile = (256, 0, 256, 256)
    assert detector.cut_by_view((256, 40, 300, 120), tile, (512, 512))  # the tile's left edge: inside the image
    assert detector.cut_by_view((300, 200, 360, 256), tile, (512, 512))  # its bottom edge
    assert not detector.cut_by_view((300, 0, 360, 80), tile, (512, 512))  # the image's top edge
    assert not detector.cut_by_view((400, 40, 512, 120), tile, (512, 512))  # the image's right edge
    assert not detector.cut_by_view((0, 0, 512, 512), (0, 0, 512, 512), (512, 512))


def test_overlapping_boxes_of_one_term_are_one_subject_the_best():
    found = [Detection((10, 10, 50, 90), 0.4, "person"), Detection((12, 12, 52, 92), 0.6, "person"),
             Detection((12, 12, 52, 92), 0.3, "bottle"), Detection((60, 10, 100, 90), 0.2, "person")]
    assert detector.one_box_each(found) == [found[1], found[2], found[3]]  # best first; a bottle is no person


def test_boxes_map_back_from_a_stretched_or_a_padded_view():
    boxes = np.array([[0.5, 0.5, 0.5, 0.5]])
    # OWL-ViT stretches a 200x100 view to its square input: 0..1 is the view's width and height
    assert detector.view_boxes(boxes, (100, 50, 200, 100), padded=False) == [(150, 75, 250, 125)]
    # OWLv2 pads it to 200x200 at the bottom: 0..1 is the padded square's side (cut to the view)
    assert detector.view_boxes(boxes, (100, 50, 200, 100), padded=True) == [(150, 100, 250, 150)]


# -- weights ------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [1, 2])
def test_tiny_owl_weights_give_boxes_inside_the_image_once_per_subject(tmp_path, version):
    import transformers

    from lib_multipass.tiny_models import build_detector

    if version == 2 and not hasattr(transformers, "Owlv2ForObjectDetection"):
        pytest.skip("this transformers has no OWLv2")
    build_detector(tmp_path / "owl", seed=1, version=version)
    found = SubjectDetector(str(tmp_path / "owl"), min_score=0.0)
    image = noise(200, 120)
    long = "woman in a long red evening dress with a golden handbag and a wide straw hat"  # over 16 tokens
    assert all(d.term == long for d in found.detect(image, [long]))
    first = found.detect(image, ["person", "bottle"])
    model = found._model
    assert first == found.detect(image, ["person", "bottle"]) and found._model is model  # loaded once, same boxes
    for d in first:
        x0, y0, x1, y1 = d.box
        assert 0 <= x0 < x1 <= 200 and 0 <= y0 < y1 <= 120 and d.term in ("person", "bottle")
    assert all(a.term != b.term or box_iou(a.box, b.box) <= detector.OVERLAP
               for i, a in enumerate(first) for b in first[i + 1 :])


def test_missing_detector_weights_are_said_once_and_the_segmenter_finds_alone(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    missing = SubjectDetector("nobody/no-such-owl", models_dir=tmp_path / "owlvit")
    with pytest.raises(ModelNotFoundError, match="could not be downloaded.*nobody--no-such-owl.*detector off"):
        missing.load()
    assert detector.boxes_of(missing) is None  # not tried again: the job goes on without it
    with pytest.raises(ModelNotFoundError, match="not found at .*nothing-here.*OWL-ViT/OWLv2"):
        SubjectDetector(str(tmp_path / "nothing-here")).load()
    make = detector_choice.make_detector
    assert make("") is None and make("default").source == detector.default_detector()


def test_hub_weights_are_fetched_once_into_the_models_folder(tmp_path, monkeypatch):
    """Safetensors when the repository has them, its pickled weights when not; a later job
    loads the folder without asking the hub."""
    import huggingface_hub

    asked = []

    def fake_download(repo, local_dir, allow_patterns):
        asked.append(allow_patterns)
        folder = Path(local_dir)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text("{}")
        if "pytorch_model.bin" in allow_patterns:
            (folder / "pytorch_model.bin").write_bytes(b"")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    folder = hub.local_weights("google/owlvit-base-patch32", tmp_path, "subject detector", "x", "610 MB", "off")
    assert folder == str(tmp_path / "google--owlvit-base-patch32") and (Path(folder) / "pytorch_model.bin").exists()
    assert asked == [["*.json", "*.txt", "*.safetensors"], ["pytorch_model.bin"]]
    assert hub.local_weights("google/owlvit-base-patch32", tmp_path, "subject detector", "x", None, "off") == folder
    assert len(asked) == 2  # found there: no second download
    with pytest.raises(ModelNotFoundError, match="no such folder"):
        hub.local_weights("not a hub id", tmp_path, "subject detector", "google/owlvit-base-patch32", None, "off")


# -- boxes in the mask stage --------------------------------------------------------------


@pytest.fixture(scope="module")
def tools():
    segmenter, faces = SelfieSegmenter(), MediaPipeFaceDetector()
    return segment_with(segmenter), lambda image, box: faces_in(faces.detect, image, box)


def true_boxes(scene):
    return lambda image, terms: [mask_box(person) for person in scene.people][::-1]  # best first is not left first


def test_a_person_of_12_percent_the_segmenter_misses_is_found_in_its_box(tools):
    """A man behind a camera, 12 % of a landscape frame on grass: no face, a few of the whole
    view's input pixels. Without boxes nothing is found; with his box, he is."""
    cut = cutouts()[1]
    scale = 0.12 * 512 / cut.rgba.height
    made = compose("t", {}, backgrounds()["grass"], FRAMES["landscape"], [(cut, True, scale, 154, 456)])
    without = masking.find_subjects(tools[0], made.image, SPEC, tools[1])
    assert iou(without.mask, made.subjects) < 0.2
    found = masking.find_subjects(tools[0], made.image, SPEC, tools[1], detect_subjects=true_boxes(made))
    assert len(found.instances) == 1 and iou(found.mask, made.subjects) >= 0.8


def test_touching_people_are_one_instance_each_left_to_right_from_their_boxes(tools):
    cut = cutouts()[0]
    size = FRAMES["landscape"]
    scale = 0.5 * size[1] / cut.rgba.height
    width = round(cut.rgba.width * scale)
    placed = [(cut, False, scale, 60, size[1] - round(cut.rgba.height * scale)),
              (cut, True, scale, 60 + round(0.75 * width), size[1] - round(cut.rgba.height * scale) - 20)]
    made = compose("t", {}, backgrounds()["brick"], size, placed)
    found = masking.find_subjects(tools[0], made.image, SPEC, tools[1], detect_subjects=true_boxes(made))
    assert len(found.instances) == 2
    assert all(iou(a, b) >= 0.8 for a, b in zip(found.instances, made.people))


def test_a_person_between_two_others_keeps_their_own_box():
    """Three people in a row, each crop's map holding the neighbours too (the selfie model's
    way in a crowded group), the middle one turned away (no face): their box, mostly covered
    by the outer two's masks, is still a person of their own, not a repeat of those found before."""
    prob = map_of([(10, 10, 290, 120)], size=(300, 120))
    faces = [Face((50, 15, 70, 35), 0.9), Face((220, 15, 240, 35), 0.9)]
    segment = segment_of(prob)

    def detect_faces(image, box=None):
        return [f for f in faces if box is None or (box[0] <= f.box[0] and f.box[2] <= box[2]
                                                    and box[1] <= f.box[1] and f.box[3] <= box[3])]

    boxes = [(10, 10, 130, 120), (170, 10, 290, 120), (90, 10, 210, 120)]  # best first: the middle one last
    found = masking.find_subjects(segment, Image.new("RGB", (300, 120)), SPEC, detect_faces,
                                  detect_subjects=lambda image, terms: boxes)
    assert len(found.instances) == 3
    assert [bool(m[80, x]) for m in found.instances for x in (60, 150, 230)] == [True, False, False,
                                                                               False, True, False,
                                                                               False, False, True]
    again = masking.find_subjects(segment, Image.new("RGB", (300, 120)), SPEC, detect_faces,
                                  detect_subjects=lambda image, terms: boxes + [(12, 10, 128, 118)])
    assert len(again.instances) == 3  # a second box on the first person is that person again


def test_objects_by_text_are_one_instance_per_box_and_nothing_outside_the_boxes():
    """`--mask_prompt bottle`: two bottles the segmenter draws joined by a flood across the
    table; with their boxes they are two instances and the table is in neither."""
    prob = map_of([(20, 20, 60, 90), (60, 70, 140, 90), (140, 20, 180, 90)])
    spec = mask_spec(MultipassOptions.from_dict({"mask_prompt": "bottle"}), None)
    segment = segment_of(prob)
    boxes = [(140, 20, 180, 90), (20, 20, 60, 90)]
    found = masking.find_subjects(segment, Image.new("RGB", (200, 100)), spec, None,
                                  detect_subjects=lambda image, terms: boxes)
    assert len(found.instances) == 2 and not found.notes
    left, right = found.instances
    assert mask_box(left)[0] <= 21 and mask_box(right)[0] >= 138  # left to right
    assert not found.mask[80, 100]  # the flood between them: in no box
    none = masking.find_subjects(segment, Image.new("RGB", (200, 100)), spec, None,
                                 detect_subjects=lambda image, terms: [])
    assert len(none.instances) == 1 and "found no 'bottle'" in none.notes[0]  # said; the segmenter's map is used


def test_a_person_prompt_nothing_boxes_and_no_face_finds_is_no_person_unless_the_check_is_off():
    """A bird the segmenter takes for a person (bench-masks' real photos): the detector boxes
    no person and no face is found, so nothing is in-painted, and the note says how to get the
    segmenter's map anyway (mask_person_check off: the old fallback, said too)."""
    prob = map_of([(20, 20, 60, 96)])
    segment = segment_of(prob)

    def find(check):
        return masking.find_subjects(segment, Image.new("RGB", (200, 100)), SPEC, lambda image, box=None: [],
                                     detect_subjects=lambda image, terms: [], person_check=check)

    checked, unchecked = find(True), find(False)
    assert checked.instances == [] and not checked.mask.any()
    assert "found no 'person' and no face was found: nothing is in-painted" in checked.notes[0]
    assert "mask_person_check off" in checked.notes[0]
    assert len(unchecked.instances) == 1 and iou(unchecked.mask, prob > 0) == 1.0
    assert "found no 'person' and no face was found: the mask is the segmenter's map" in unchecked.notes[0]


def test_with_a_detector_a_part_it_did_not_box_needs_a_face_not_only_a_body():
    """A pose model finds 'bodies' on a motorbike's fork; the detector, which boxed the person,
    is the better judge: the part it left out is not in-painted, and the note says so."""
    prob = map_of([(20, 20, 60, 96), (120, 30, 190, 90)])
    image = Image.new("RGB", (200, 100))
    segment = segment_of(prob)

    def faces(image, box=None):
        return []

    def body(image, box):
        return Face((140, 30, 160, 50), 0.9)

    found = masking.find_subjects(segment, image, SPEC, faces, find_body=body,
                                  detect_subjects=lambda image, terms: [(20, 20, 60, 96)])
    assert len(found.instances) == 1 and mask_box(found.instances[0])[2] <= 62
    assert "x 120-190" in found.notes[0]


def test_the_runner_asks_the_engines_detector_and_bounds_the_pass_by_its_box():
    from lib_multipass.engines.recording import RecordingEngine
    from lib_multipass.plan import Generation, make_plan
    from lib_multipass.prompt import parse
    from lib_multipass.runner import run

    prob = map_of([(20, 10, 60, 96), (60, 60, 150, 96)], size=(200, 96))  # a person and a flood beside
    engine = RecordingEngine({"person": prob}, boxes=[(20, 10, 62, 96)])
    plan = make_plan(parse("scene BREAK man"), MultipassOptions.from_dict({"mask_dilate": 0, "mask_blur": 0}),
                     Generation(seed=1, steps=2, width=200, height=96))
    run(plan, engine)
    assert ("detect", ("person",)) in engine.requests
    mask = engine.requests[-1].mask
    assert mask[50, 40] and not mask[80, 120]  # the person, not the flood outside the box
