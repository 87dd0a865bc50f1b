"""The models a host keeps loaded between jobs, on an object the host owns."""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

#: a model named on the Hugging Face hub (owner/name), not a path
HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")


def file_stamp(path: str | Path) -> tuple[str, int, int]:
    """A file's identity for a cache key: replacing the file loads it anew."""
    stat = Path(path).stat()
    return str(Path(path).resolve()), stat.st_mtime_ns, stat.st_size


class ModelCache:
    """Loaded models (ONNX sessions, a segmenter, reference photos), each under the key of what
    it was loaded from; past `capacity` the least recently used is dropped.

    Its lifetime is its owner's: the standalone engine's (one process, one checkpoint), or the
    WebUI extension's (emptied when the WebUI unloads its scripts). Nothing is cached at module
    level, so a test, a second engine or a reloaded UI starts empty."""

    def __init__(self, capacity: int = 32):
        self.capacity = capacity
        self._items: OrderedDict[tuple[Hashable, ...], Any] = OrderedDict()

    def get(self, key: tuple[Hashable, ...], load: Callable[[], T], one_of_kind: bool = False) -> T:
        """The model under `key` (its kind first: `("segmenter", source, device)`), loaded by
        `load()` the first time; a failed load is not kept. `one_of_kind`: the others of its kind
        go when it loads (a setting changed: the old weights are not kept beside the new)."""
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        value = load()
        if one_of_kind:
            for old in [k for k in self._items if k[0] == key[0]]:
                del self._items[old]
        self._items[key] = value
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)
        return value

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)
