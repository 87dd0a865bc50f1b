"""Face swap wiring with small ONNX models built here, with inswapper's and ArcFace's inputs and
outputs. Honest scope: alignment, paste-back and colour correction, not likeness."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image
from skimage import data

from lib_multipass.engines.recording import RecordingEngine
from lib_multipass.errors import ModelNotFoundError, MultipassError
from lib_multipass.face_passes import run_faces
from lib_multipass.faces.detect import Face, MediaPipeFaceDetector, face_mask
from lib_multipass.faces.swap import FaceSwapper, find_model
from lib_multipass.model_cache import ModelCache
from lib_multipass.options import MultipassOptions
from lib_multipass.plan import Generation, make_plan
from lib_multipass.prompt import parse
from lib_multipass.runner import run


def swapper_model(path, constant: float | None = None):
    """inswapper's signature: target [1,3,128,128] + source [1,512] -> [1,3,128,128]; emap last.
    Output: the target itself (constant None) or a flat grey; the source is read (times zero)."""
    zero = numpy_helper.from_array(np.zeros((1,), np.float32), "zero")
    grey = numpy_helper.from_array(np.full((1,), constant or 0.0, np.float32), "grey")
    keep = numpy_helper.from_array(np.full((1,), 0.0 if constant is not None else 1.0, np.float32), "keep")
    emap = numpy_helper.from_array(np.eye(512, dtype=np.float32), "emap")
    nodes = [helper.make_node("ReduceSum", ["source"], ["s"], keepdims=0),
             helper.make_node("Mul", ["s", "zero"], ["s0"]),
             helper.make_node("Mul", ["target", "keep"], ["t"]),
             helper.make_node("Add", ["t", "grey"], ["tg"]),
             helper.make_node("Add", ["tg", "s0"], ["output"])]
    graph = helper.make_graph(nodes, "inswapper_like",
                              [helper.make_tensor_value_info("target", TensorProto.FLOAT, [1, 3, 128, 128]),
                               helper.make_tensor_value_info("source", TensorProto.FLOAT, [1, 512])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, 128, 128])],
                              [zero, grey, keep, emap])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


def recognizer_model(path):
    """ArcFace's signature: [1,3,112,112] -> [1,512] (here: mean colour through a fixed projection)."""
    weight = numpy_helper.from_array(np.random.default_rng(0).normal(size=(3, 512)).astype(np.float32), "w")
    nodes = [helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
             helper.make_node("Flatten", ["pooled"], ["flat"]),
             helper.make_node("MatMul", ["flat", "w"], ["embedding"])]
    graph = helper.make_graph(nodes, "arcface_like",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 112, 112])],
                              [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [1, 512])], [weight])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


@pytest.fixture(scope="module")
def astronaut():
    image = Image.fromarray(data.astronaut())
    return image, MediaPipeFaceDetector().detect(image)[0]


def test_identity_swap_puts_the_face_back_where_it_was(tmp_path, astronaut):
    image, face = astronaut
    swapper = FaceSwapper(swapper_model(tmp_path / "s.onnx"), recognizer_model(tmp_path / "r.onnx"),
                          MediaPipeFaceDetector())
    identity = swapper.identity([image])
    out = np.asarray(swapper.swap(image, face, identity, face_mask(image, face))).astype(int)
    before = np.asarray(image).astype(int)
    x0, y0, x1, y1 = face.box
    changed = np.any(out != before, axis=2)
    assert changed.any() and changed[y0 - 20:y1 + 20, x0 - 20:x1 + 20].sum() == changed.sum()
    assert np.abs(out - before)[y0:y1, x0:x1].mean() < 6  # aligned and warped back onto itself


def test_colour_correction_matches_the_original_face(tmp_path, astronaut):
    image, face = astronaut
    swapper = FaceSwapper(swapper_model(tmp_path / "g.onnx", constant=0.5), recognizer_model(tmp_path / "r.onnx"),
                          MediaPipeFaceDetector(), upscale=True)
    mask = face_mask(image, face)
    out = np.asarray(swapper.swap(image, face, swapper.identity([image]), mask)).astype(float)
    core = mask & (np.asarray(image).sum(axis=2) >= 0)
    before = np.asarray(image).astype(float)
    assert np.abs(out[core].mean(axis=0) - before[core].mean(axis=0)).max() < 12  # grey became skin-toned
    assert not np.array_equal(out[core], before[core])


def test_identity_is_the_mean_of_the_references(tmp_path, astronaut):
    image, _ = astronaut
    swapper = FaceSwapper(swapper_model(tmp_path / "s.onnx"), recognizer_model(tmp_path / "r.onnx"),
                          MediaPipeFaceDetector())
    one = swapper.identity([image])
    assert np.allclose(swapper.identity([image, image]), one) and abs(np.linalg.norm(one) - 1) < 1e-5
    with pytest.raises(MultipassError, match="no face found in the face swap reference"):
        swapper.identity([Image.new("RGB", (64, 64))])


def test_missing_models_name_the_file_and_the_job_goes_on(tmp_path):
    with pytest.raises(ModelNotFoundError, match="inswapper_128.onnx not found: put it in"):
        find_model("inswapper_128.onnx", None, [tmp_path])
    Image.new("RGB", (64, 64)).save(tmp_path / "ref.png")
    points = ((20.0, 25.0), (44.0, 25.0), (32.0, 36.0), (23.0, 46.0), (41.0, 46.0))
    engine = RecordingEngine(faces=[Face((10, 10, 54, 54), 0.9, points)])
    options = MultipassOptions.from_dict({"face_swap": True, "face_swap_images": str(tmp_path / "ref.png"),
                                          "inpaint_faces": True})
    plan = make_plan(parse("portrait of ohwx man"), options, Generation(seed=1, steps=4, width=64, height=64))
    result = run(plan, engine)
    assert any("inswapper_128.onnx not found" in w for w in result.warnings)
    assert list(result.images) == ["base", "faces_face_1"]  # no swap image for a swap that never ran; faces ran
    # with no face found, the missing model is still named
    result = run(plan, RecordingEngine())
    assert any("inswapper_128.onnx not found" in w for w in result.warnings)


def test_swap_needs_reference_images_before_anything_runs():
    engine = RecordingEngine()
    plan = make_plan(parse("portrait"), MultipassOptions.from_dict({"face_swap": True}),
                     Generation(seed=1, steps=4, width=64, height=64))
    with pytest.raises(MultipassError, match="reference images"):
        run(plan, engine)
    assert engine.requests == []


def test_order_switch(tmp_path):
    swapper_model(tmp_path / "inswapper_128.onnx")
    recognizer_model(tmp_path / "w600k_r50.onnx")
    points = ((20.0, 25.0), (44.0, 25.0), (32.0, 36.0), (23.0, 46.0), (41.0, 46.0))
    engine = RecordingEngine(faces=[Face((10, 10, 54, 54), 0.9, points)])
    Image.new("RGB", (64, 64), (120, 90, 80)).save(tmp_path / "ref.png")
    for first, expected in ((True, ["faces_swap", "faces_face_1"]), (False, ["faces_face_1", "faces_swap"])):
        options = MultipassOptions.from_dict({"face_swap": True, "face_swap_images": str(tmp_path / "ref.png"),
                                              "inpaint_faces": True, "face_swap_first": first})
        plan = make_plan(parse("portrait"), options, Generation(seed=1, steps=4, width=64, height=64))
        names: list[str] = []
        warnings: list[str] = []
        run_faces(plan, engine, Image.new("RGB", (64, 64), (90, 80, 70)), [],
                  lambda name, image, alpha, found=names: found.append(name), warnings, dirs=(tmp_path,))
        assert names == expected, warnings


def test_models_and_references_load_once_per_file(tmp_path, astronaut, monkeypatch):
    from lib_multipass.faces import swap as faceswap

    image, _ = astronaut
    image.save(tmp_path / "ref.png")
    swap, recognize = swapper_model(tmp_path / "s.onnx"), recognizer_model(tmp_path / "r.onnx")
    sessions, reads = [], []
    real_session, real_open = faceswap._session, faceswap.open_image
    monkeypatch.setattr(faceswap, "_session", lambda path: sessions.append(path) or real_session(path))
    monkeypatch.setattr(faceswap, "open_image", lambda *a: reads.append(a[0]) or real_open(*a))
    models = ModelCache()  # an engine's: it lives as long as the engine
    for _ in range(3):  # three jobs on one engine, each with its own swapper and detector
        swapper = FaceSwapper(swap, recognize, MediaPipeFaceDetector(), models=models)
        faceswap.load_references([str(tmp_path)], models)
        swapper.identity(faceswap.load_references([str(tmp_path / "ref.png")], models))
    assert len(sessions) == 2 and len(reads) == 1
    Image.new("RGB", (32, 32)).save(tmp_path / "ref.png")  # a changed file is read again
    faceswap.load_references([str(tmp_path / "ref.png")], models)
    assert len(reads) == 2
    FaceSwapper(swap, recognize, MediaPipeFaceDetector(), models=ModelCache())  # a new engine loads its own
    assert len(sessions) == 4


def test_model_cache_keeps_the_recent_and_one_of_a_kind():
    loads: list[str] = []
    cache = ModelCache(capacity=2)

    def load(name):
        return lambda: loads.append(name) or name

    assert cache.get(("a", 1), load("a1")) == "a1" and cache.get(("a", 1), load("again")) == "a1"
    cache.get(("b", 1), load("b1"))
    cache.get(("a", 1), load("again"))  # a1 is now the most recent
    cache.get(("c", 1), load("c1"))  # b1, the least recent, goes
    assert len(cache) == 2 and cache.get(("b", 1), load("b1 anew")) == "b1 anew"
    cache.get(("a", 2), load("a2"), one_of_kind=True)  # a setting changed: a1 goes
    assert cache.get(("a", 1), load("a1 anew")) == "a1 anew"
    with pytest.raises(RuntimeError):
        cache.get(("d", 1), lambda: (_ for _ in ()).throw(RuntimeError("broken file")))
    assert ("d", 1) not in cache._items  # a failed load is not kept
    cache.clear()
    assert len(cache) == 0
