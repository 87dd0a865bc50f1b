"""User-facing errors. Each names what is wrong and how to fix it.

Hosts catch `MultipassError` to report it without a traceback (the CLI exits 2);
anything else is a bug.
"""

from __future__ import annotations


class MultipassError(Exception):
    """An error caused by the user's input or files, not by the program."""


class PromptError(MultipassError):
    """A prompt that cannot be parsed; `offset` is the character offset in the prompt."""

    def __init__(self, message: str, offset: int, flag: str | None = None):
        super().__init__(f"{message} (at character {offset})")
        self.offset = offset
        self.flag = flag


class OptionsError(MultipassError):
    """An option value that is out of range, of the wrong type or unknown."""

    def __init__(self, message: str, field: str):
        super().__init__(message)
        self.field = field


class ModelNotFoundError(MultipassError):
    """A checkpoint, LoRA, segmenter or other model file that cannot be found."""


class PassInterrupted(Exception):
    """The user stopped a pass (Interrupt / Skip): its half-made image (`partial`, when the host
    has one) is never pasted into the result; it may be kept under its own name."""

    def __init__(self, name: str = "a pass", partial: object = None):
        super().__init__(f"interrupted during {name}")
        self.name = name
        self.partial = partial

    def named(self, name: str) -> PassInterrupted:
        return PassInterrupted(name, self.partial)
