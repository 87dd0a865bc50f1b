"""People first, then each person's mask in a crop that suits them.

A segmenter reading a whole wide shot sees a person of 12 % of the frame as a few of its
input pixels, and reads a cat's face or a cup as a person. So: find the people by their
faces (a tiled detector over the image, and a second look in a crop around each part of the
segmenter's whole-image map), then segment each one in a square crop around them, at the
segmenter's own resolution, and map it back exactly. Each person is bounded by where their
body can be, so nothing far from a person is marked; people who touch are told apart by
the nearest body axis.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from ..faces.detect import Face, box_iou, tiles
from ..images import longer_side
from ..parallel import parallel_map
from .bodies import TORSO_FACES, Body
from .crop import Box, mask_box

Segment = Callable[[Box | None], np.ndarray]  # a crop of the image (None: all of it) -> its probability map
Detect = Callable[[Box | None], list[Face]]  # a crop of the image (None: all of it) -> its faces
FindBody = Callable[[Image.Image, Box], Face | None]  # an image, a crop -> the head of the body in it (score: how sure)
CROP_MARGIN = 0.1  # of the person's longer side, each way: the crop the mask is made in
BOX_SLACK = 0.03  # of a detector box's longer side, each way: how far its subject's mask may reach past it
#: of a detector box's longer side, each way: its crop. Tighter than a face's (the box is the
#: person's own): a model made for one person sees less of a neighbour (touching groups right
#: 14 -> 16 of 16 with true boxes; 0.0 flooded one case)
BOX_MARGIN = 0.05
#: the search for people too small for the whole-image map: pose over tiles of this part of the
#: image's short side (a walker of 12 % of the frame is then half a tile high, as pose wants)
SMALL_TILE = 0.25
#: the search runs only where nobody found is this tall (of the frame): a wide shot. Beside a
#: main subject, walkers in the background are not the subjects of person prompts (and would
#: take their places left to right), and a medium shot does not pay for the search
WIDE_SHOT = 1 / 3
SURE_BODY = 0.9  # torso visibility pose must give a body the tile search finds
#: the segmenter's mean probability over the mask of a faceless part whose body pose sees
#: lying or bent (not `Body.upright`), for it to be a person. On bench-masks a motorbike's
#: fork, whose headlight pose took for a head, had 0.63 and 0.72; the people so found (bent
#: over a camera, seen from the side) 0.85 and more, on the held-out backgrounds too
SURE_BENT = 0.8
UPRIGHT = 1.5  # height over width of such a person's mask: standing or walking, whole
#: faces from a face that a standing person's feet (or a kicking one's) can be (a face box is
#: about a ninth of a standing adult: 9.1 on bench-masks' street photo); pose looks for the
#: feet in a crop this long
LEGS = 10.0
SIDE = 3.0  # faces to each side of a face's centre that its body box reaches (arms, what they hold)
#: faces from a face's centre that its head can reach: a disc, above the body box's top (0.6
#: faces over the face box). Hair, a hat, a head seen from the side or bent: on bench-masks
#: the cameraman's hair is 1.4 faces above his face's centre, Zidane's 1.3 (both were cut flat)
HEAD = 1.4
SAME_ANCHOR = 0.3  # IoU of two boxes' anchors (faces, or top centres) above which they hold one subject
WALL = (255, 0, 255)  # the colour the split paints outside everyone


@dataclass(frozen=True)
class Person:
    mask: np.ndarray  # (H, W) bool
    prob: np.ndarray  # (H, W) float32, 0 outside the person's crop
    face: Face


def square_crop(box: Box, size: tuple[int, int], margin: float = CROP_MARGIN) -> Box:
    """A square around `box` with `margin` of its longer side each way, moved (not cut) to
    stay inside the image; cut only where the image is smaller than the square."""
    width, height = size
    x0, y0, x1, y1 = box
    side = round(longer_side(box) * (1 + 2 * margin))
    side_x, side_y = min(side, width), min(side, height)
    left = min(max(0, round((x0 + x1 - side_x) / 2)), width - side_x)
    top = min(max(0, round((y0 + y1 - side_y) / 2)), height - side_y)
    return left, top, left + side_x, top + side_y


def body_box(face: Face, size: tuple[int, int], reach: float = 1.0, below: float = 7.0) -> Box:
    """Where a face's body can be: SIDE faces each side (arms, what they hold), `below` faces
    below (7: to the knees of a standing person), or as far as the limbs pose saw (a `Body`'s
    extent; no further than LEGS faces: one skeleton across two people); times `reach`."""
    x0, y0, x1, y1 = face.box
    s = longer_side(face.box)
    cx = (x0 + x1) / 2
    left, right, bottom = cx - SIDE * s, cx + SIDE * s, y1 + below * s
    if isinstance(face, Body) and face.extent is not None:
        far = LEGS * s
        left = min(left, max(face.extent[0], cx - far))
        right = max(right, min(face.extent[2], cx + far))
        bottom = max(bottom, min(face.extent[3], y1 + far))
    return (max(0, round(cx - reach * (cx - left))), max(0, round(y0 - 0.6 * s)),
            min(size[0], round(cx + reach * (right - cx))), min(size[1], round(y1 + reach * (bottom - y1))))


def standing(find_feet: FindBody, image: Image.Image, face: Face) -> Face:
    """`face` as a `Body` with the extent of the limbs pose sees, in a crop showing the longest
    body (LEGS faces below), when it sees the feet of a body with this head; else `face`."""
    if isinstance(face, Body) and face.extent is not None:
        return face  # seen whole already
    body = find_feet(image, body_box(face, image.size, below=LEGS))  # not a square: it would show the neighbours
    if not isinstance(body, Body) or body.extent is None:
        return face
    x0, y0, x1, y1 = face.box
    s = longer_side(face.box)
    bx, by = (body.box[0] + body.box[2]) / 2, (body.box[1] + body.box[3]) / 2
    if not (x0 - s <= bx <= x1 + s and y0 - s <= by <= y1 + s):  # a neighbour's body
        return face
    upright = face.upright if isinstance(face, Body) else body.upright
    return Body(face.box, face.score, face.points, extent=body.extent, upright=upright)


def inside(box: Box, shape: tuple[int, ...]) -> np.ndarray:
    out = np.zeros(shape[:2], bool)
    out[box[1] : box[3], box[0] : box[2]] = True
    return out


def body_region(face: Face, body: Box, shape: tuple[int, int]) -> np.ndarray:
    """Where a face's person can be: their body box (`body_box`) and their head (a disc of
    HEAD faces)."""
    x0, y0, x1, y1 = face.box
    region = inside(body, shape)
    centre = (round((x0 + x1) / 2), round((y0 + y1) / 2))
    cv2.circle(region.view(np.uint8), centre, round(HEAD * longer_side(face.box)), 1, -1)  # as bytes: 1 is True
    return region


def segment_in(segment: Segment, image: Image.Image, crop: Box) -> np.ndarray:
    """The segmenter's map of `crop`, placed in a full-size map (0 elsewhere)."""
    x0, y0, x1, y1 = crop
    out = np.zeros((image.height, image.width), np.float32)
    out[y0:y1, x0:x1] = segment(crop)
    return out


def touching(mask: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """The connected parts of `mask` that meet `seed`."""
    count, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    hit = np.unique(labels[seed & mask])
    return np.isin(labels, hit[hit > 0]) if count > 1 else mask


def refine(segment: Segment, image: Image.Image, seed: np.ndarray, box: Box, cut: float,
           bound: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(mask, prob) of the person at `seed`, segmented in a square crop around `box`, within
    `bound` when given (where that person's body can be)."""
    prob = segment_in(segment, image, square_crop(box, image.size))
    mask = touching(prob >= cut if bound is None else (prob >= cut) & bound, seed)
    return mask, np.where(mask, prob, 0.0).astype(np.float32)


def seed_of(face: Face, shape: tuple[int, int]) -> np.ndarray:
    """The face and the neck and chest below it (two faces down, one face wide)."""
    x0, y0, x1, y1 = face.box
    s = longer_side(face.box)
    seed = np.zeros(shape, bool)
    seed[y0 : y1 + 2 * s, max(0, (x0 + x1) // 2 - s // 2) : (x0 + x1) // 2 + s // 2 + 1] = True
    return seed


def from_face(segment: Segment, image: Image.Image, face: Face, cut: float) -> Person | None:
    """Segment where the face's body can be, then again in a crop fitted to what was found.

    The seed is the face and the neck and chest below it: a face behind a camera, a phone or
    hair is not marked by every segmenter, the chest is."""
    seed = seed_of(face, (image.height, image.width))
    box = None
    wide = body_region(face, body_box(face, image.size), seed.shape)
    for reach in (1.0, 0.6):  # a segmenter made for one person may see only a neighbour in the wide crop
        body = body_box(face, image.size, reach)
        bound = wide if reach == 1.0 else body_region(face, body, seed.shape)
        first, _ = refine(segment, image, seed, body, 0.6 * cut, bound)  # only for the box: lenient
        box = mask_box(first)
        if box is not None and (first & seed).sum() >= 0.3 * seed.sum():  # this person, not only a neighbour
            break
    if box is None:
        return None
    mask, prob = refine(segment, image, first, box, cut, wide)
    return Person(mask, prob, face) if mask.any() else None


def head_of(box: Box) -> Face:
    """A subject found by its box, as the face-like anchor that people are split and seeded
    by: a square a third of its width at its top centre (the head, for a person)."""
    x0, y0, x1, y1 = box
    side = max(1, round(min(x1 - x0, y1 - y0) / 3))
    left = (x0 + x1 - side) // 2
    return Face((left, y0, left + side, y0 + side), 1.0)


def from_box(segment: Segment, image: Image.Image, box: Box, cut: float, anchor: Face | None = None) -> Person | None:
    """The subject a detector boxed: segmented in a square crop around the box (BOX_MARGIN) and
    kept within it (BOX_SLACK more each way: boxes are tight, a segmenter's edge is soft).
    `anchor`: its face, when one was seen in the box (else `head_of`)."""
    x0, y0, x1, y1 = box
    slack = round(BOX_SLACK * longer_side(box))
    width, height = image.size
    bound = inside((max(0, x0 - slack), max(0, y0 - slack), min(width, x1 + slack), min(height, y1 + slack)),
                   (height, width))
    prob = segment_in(segment, image, square_crop(box, image.size, BOX_MARGIN))
    mask = (prob >= cut) & bound
    face = anchor or head_of(box)
    return Person(mask, np.where(mask, prob, 0.0).astype(np.float32), face) if mask.any() else None


def face_of(box: Box, faces: Sequence[Face]) -> Face | None:
    """The best face whose centre is in the top half of `box` (a person's head is there)."""
    x0, y0, x1, y1 = box
    inner = [f for f in faces if x0 <= (f.box[0] + f.box[2]) / 2 <= x1 and y0 <= (f.box[1] + f.box[3]) / 2 <= (y0 + y1) / 2]
    return max(inner, key=lambda f: f.score) if inner else None


def from_boxes(segment: Segment, image: Image.Image, boxes: Sequence[Box], cut: float,
               faces: Sequence[Face] = ()) -> list[Person]:
    """A subject per box (best first); a box anchored where one found before is (the same face,
    or the same top centre) is that subject again. Not by how much of its mask earlier masks
    hold: in a crowded group each crop holds the neighbours too, and a person sitting between
    two others lost their own box that way (a poker table of six in bench-masks' real photos)."""
    found: list[Person] = []
    for box in boxes:
        subject = from_box(segment, image, box, cut, face_of(box, faces))
        if subject is not None and all(box_iou(subject.face.box, p.face.box) < SAME_ANCHOR for p in found):
            found.append(subject)
    return found


def ordered(found: Sequence[Person], image: Image.Image, min_area: float) -> list[Person]:
    """Each subject's own pixels (`separate`), the ones left smaller than `min_area` of the
    image dropped, left to right."""
    masks = separate(found, image)
    kept = [Person(mask, np.where(mask, p.prob, 0.0).astype(np.float32), p.face)
            for p, mask in zip(found, masks) if mask.sum() >= min_area * mask.size]
    return sorted(kept, key=lambda p: int(np.nonzero(p.mask.any(axis=0))[0][0]))


def separate(people: Sequence[Person], image: Image.Image) -> list[np.ndarray]:
    """Each person's own pixels where masks overlap (people who touch: each crop holds the
    neighbour too). Contested pixels are split along the image's edges (a watershed from each
    person's face and chest and uncontested pixels: an orange suit against a dark coat); a
    pixel no basin of a person reaches goes to the person whose body axis (the face, and the
    line below it) is nearest, in units of that person's face size."""
    masks = [p.mask for p in people]
    claims = np.sum(masks, axis=0) if masks else None
    if claims is None or claims.max() <= 1:
        return list(masks)
    markers = np.zeros(claims.shape, np.int32)
    seeds = [seed_of(p.face, claims.shape) & p.mask for p in people]
    alone = np.sum(seeds, axis=0) == 1  # a pixel in two people's seeds belongs to no seed
    for i, (mask, seed) in enumerate(zip(masks, seeds)):
        markers[(mask & (claims == 1)) | (seed & alone)] = i + 1
    pixels = np.array(image.convert("RGB"))
    pixels[claims == 0] = WALL  # outside everyone: crossed only when nothing else is left
    # one pixel of wall around: OpenCV's watershed leaves the image's own border unlabelled
    basins = cv2.watershed(cv2.copyMakeBorder(pixels, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=WALL),
                           np.pad(markers, 1))[1:-1, 1:-1]
    reached = (basins >= 1) & (basins <= len(people))
    nearest = basins - 1
    if (~reached & (claims > 1)).any():  # rare: a contested pixel cut off from every person's basin
        nearest = np.where(reached, nearest, nearest_axis(people, claims.shape))
    return [person.mask & ((claims == 1) | (nearest == i)) for i, person in enumerate(people)]


def nearest_axis(people: Sequence[Person], shape: tuple[int, int]) -> np.ndarray:
    """The index of the person whose body axis is nearest each pixel (of their own mask)."""
    height, width = shape
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    distance = []
    for person in people:
        x0, y0, x1, y1 = person.face.box
        size = max(1.0, float(longer_side(person.face.box)))
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        dy = np.where(ys > cy, 0.0, ys - cy)  # below the face centre: the distance to the axis
        distance.append(np.where(person.mask, np.hypot(xs - cx, dy) / size, np.inf))
    return np.argmin(distance, axis=0)


def face_in(detect_faces: Detect, image: Image.Image, region: np.ndarray) -> Face | None:
    """The best face on `region` or just above it (a segmenter that sees a small person
    often misses the head), looked for in a crop around it: a small person's face is too
    small for the whole-image look, not for a crop the model's own size."""
    found = mask_box(region)
    if found is None:
        return None
    box = head_room(found)
    faces = detect_faces(square_crop(box, image.size, margin=0.0))
    on = [f for f in faces if box[0] <= (f.box[0] + f.box[2]) / 2 <= box[2] and box[1] <= (f.box[1] + f.box[3]) / 2 <= box[3]]
    return max(on, key=lambda f: f.score) if on else None


def head_room(box: Box) -> Box:
    """`box` with as much again above it: a segmenter that sees a small person often misses
    the head."""
    x0, y0, x1, y1 = box
    return x0, max(0, y0 - (y1 - y0) // 2), x1, y1


def body_in(find_body: FindBody, image: Image.Image, box: Box) -> Face | None:
    """The head of a body at `box`, looked for in a crop showing all of it, then with more
    room around it (the pose model finds a small person more often with context). It may be
    a neighbour's: the caller checks whom the body's mask covers."""
    for margin in (CROP_MARGIN, 0.5):
        head = find_body(image, square_crop(head_room(box), image.size, margin))
        if head is not None:
            return head
    return None


def height_of(person: Person) -> int:
    box = mask_box(person.mask)
    return box[3] - box[1] if box is not None else 0


def same_head(a: Face, b: Face) -> bool:
    """Whether two heads can be one person's: centres within 2.5 of the larger one's size each
    way (pose puts the head of a man filming on his camera, 1.8-2.1 faces from his face; the
    head of someone walking in front of another is at the other's legs, 3 faces and more)."""
    s = 2.5 * max(longer_side(a.box), longer_side(b.box))
    return (abs((a.box[0] + a.box[2]) - (b.box[0] + b.box[2])) / 2 <= s
            and abs((a.box[1] + a.box[3]) - (b.box[1] + b.box[3])) / 2 <= s)


def torso_long(person: Person) -> bool:
    """Whether a person found by pose alone has a mask a head and a torso long at least: pose
    also sees sure bodies in a cat's eye, where the segmenter marks a blob three heads high."""
    box = mask_box(person.mask)
    return box is not None and box[3] - box[1] >= (1 + TORSO_FACES) * (person.face.box[3] - person.face.box[1])


def sure_if_bent(person: Person) -> bool:
    """Whether a person found by pose alone, whose body it sees lying or bent, is one the
    segmenter is sure of (SURE_BENT): pose reads textures as lying skeletons (a motorbike's
    fork), someone bent over is a person too (a cameraman), and only the segmenter tells them
    apart."""
    face = person.face
    return (isinstance(face, Body) and face.upright) or float(person.prob[person.mask].mean()) >= SURE_BENT


def small_people(segment: Segment, find_body: FindBody, image: Image.Image, taken: np.ndarray,
                 cut: float, anchors: Sequence[Face] = ()) -> list[Person]:
    """People the whole-image map does not see at all: a wide shot's walkers of 12 % of the
    frame are a few of the segmenter's input pixels, and their faces are 8 px. Pose looks over
    tiles of SMALL_TILE of the short side; a body it is sure of (SURE_BODY) and sees upright
    (`Body.upright`: not a motorbike's mirror) is a person when the segmenter, in a crop around
    it, marks its head and chest and an upright shape at least a head and a torso long (pose
    also sees bodies in a cat's eye). A bird, a flag or a crowd in the stands (seated: as wide
    as high) is not taken: on bench-masks' real photos only walkers passed, and no texture of
    its composites. A head inside someone found before is theirs when it is near their face
    (`anchors`, and the walkers found here: `same_head`), else someone walking in front of them,
    taken whatever their masks share (`separate` splits them). Pose sees one body a crop, the
    most salient: tiles where it saw a body and someone found is get a second look with everyone
    found painted out (`painted_out`)."""
    found: list[Person] = []
    taken = taken.copy()
    side = max(1, round(SMALL_TILE * min(image.size)))
    crops = [(x, y, x + w, y + h) for x, y, w, h in tiles(image.width, image.height, side)]
    crops = [c for c in crops if taken[c[1] : c[3], c[0] : c[2]].mean() <= 0.5]  # else someone found there already

    def walker(head: Face | None, crop: Box) -> Person | None:
        x0, y0, x1, y1 = crop
        if (not isinstance(head, Body) or not head.upright or head.score < SURE_BODY
                or taken[y0:y1, x0:x1].mean() > 0.5):  # taken since
            return None
        cx, cy = (head.box[0] + head.box[2]) // 2, (head.box[1] + head.box[3]) // 2
        in_front = bool(taken[min(cy, image.height - 1), min(cx, image.width - 1)])  # of someone found
        if in_front and any(same_head(head, anchor) for anchor in [*anchors, *(p.face for p in found)]):
            return None  # that someone's own head
        person = from_face(segment, image, standing(find_body, image, head), cut)
        box = mask_box(person.mask) if person is not None else None
        if person is None or box is None:
            return None
        seed = seed_of(head, taken.shape)
        if ((person.mask & seed).sum() >= 0.3 * seed.sum() and box[3] - box[1] >= UPRIGHT * (box[2] - box[0])
                and torso_long(person) and (in_front or (person.mask & taken).sum() <= 0.5 * person.mask.sum())):
            return person
        return None

    def look(shown: Image.Image, crops: list[Box]) -> list[Face | None]:
        heads = parallel_map(lambda crop: find_body(shown, crop), crops)  # pose on every core
        for crop, head in zip(crops, heads):
            person = walker(head, crop)
            if person is not None:
                found.append(person)
                taken[person.mask] = True
        return heads

    heads = look(image, crops)
    again = [c for c, head in zip(crops, heads) if head is not None and 0 < taken[c[1] : c[3], c[0] : c[2]].mean() <= 0.5]
    if again:
        look(painted_out(image, taken), again)
    return found


def painted_out(image: Image.Image, taken: np.ndarray) -> Image.Image:
    """`image` with `taken` (and 2 px round it) painted the mean colour of the rest: a model
    that sees one person a crop then sees the next."""
    pixels = np.array(image.convert("RGB"))
    covered = cv2.dilate(taken.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    if covered.all():
        return image
    pixels[covered] = pixels[~covered].mean(axis=0).astype(np.uint8)
    return Image.fromarray(pixels)


def find_people(segment: Segment, detect_faces: Detect, image: Image.Image, whole: np.ndarray, min_area: float,
                cut: float = 0.5, find_body: FindBody | None = None,
                boxes: Sequence[Box] = (), find_feet: FindBody | None = None) -> tuple[list[Person], list[Box]]:
    """Every person with a face or a body, left to right, and the boxes of the parts of `whole`
    left out as nobody's.

    One person per box of the subject detector (`boxes`, best first; its face, when one is
    seen in it, anchors it), then per face no box holds whose body the segmenter finds; then
    one per part of `whole` (the segmenter's map of the whole image) that none of them holds
    and that has a face in a crop around it (a small person's face), or else a body
    (`find_body`: a person seen from behind, or too small for a face). A part with neither is
    left out: a cat, a cup or a flower the segmenter misreads has none. No person at all: the
    caller decides (without `find_body`, the whole-image map). Smaller than `min_area` of the
    image: dropped. `find_feet` (pose, whether or not it checks people) finds where a face's
    person stands whole, so their mask reaches the feet.
    """
    image.load()  # before threads crop it
    faces = sorted(detect_faces(None), key=lambda f: -f.score)
    people = from_boxes(segment, image, boxes, cut, faces)
    boxed = np.any([p.mask for p in people], axis=0) if people else np.zeros(whole.shape, bool)
    unboxed = [face for face in faces
               if not any(p.face is face for p in people) and boxed[seed_of(face, whole.shape)].mean() <= 0.5]
    if find_feet is not None:
        unboxed = parallel_map(lambda face: standing(find_feet, image, face), unboxed)
    for face in unboxed:
        person = from_face(segment, image, face, cut)
        if person is not None:  # people who touch overlap: `separate` splits them
            people.append(person)
    taken = np.any([p.mask for p in people], axis=0) if people else boxed
    count, labels, stats, _ = cv2.connectedComponentsWithStats((whole >= cut).astype(np.uint8), connectivity=8)
    faceless: list[Box] = []
    for label in range(1, count):
        part = labels == label
        if stats[label, cv2.CC_STAT_AREA] < min_area * whole.size or (part & taken).sum() > 0.3 * part.sum():
            continue
        x, y, w, h = stats[label, :4]
        near, by_body = face_in(detect_faces, image, part & ~taken), False
        if near is None and find_body is not None:
            near, by_body = body_in(find_body, image, (x, y, x + w, y + h)), True
        if near is not None and find_feet is not None:
            near = standing(find_feet, image, near)
        person = from_face(segment, image, near, cut) if near is not None else None
        if by_body and person is not None and not (torso_long(person) and sure_if_bent(person)):
            person = None
        if person is not None and (person.mask & taken).sum() <= 0.5 * person.mask.sum():  # else found before
            people.append(person)
            taken |= person.mask
        if person is None or not (person.mask & part).any():  # the part itself is nobody's
            faceless.append((int(x), int(y), int(x + w), int(y + h)))
    if find_body is not None and all(height_of(p) < WIDE_SHOT * image.height for p in people):
        people += small_people(segment, find_body, image, taken, cut, [p.face for p in people])
    return ordered(people, image, min_area), faceless
