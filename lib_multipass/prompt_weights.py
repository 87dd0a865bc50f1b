"""Prompt emphasis and long prompts as the WebUI reads them, for the standalone engine.

`(word)` is 1.1 times the attention, `[word]` 1/1.1, `(word:1.3)` 1.3; brackets nest and
multiply; `\\(` and friends are the characters themselves; a bracket left open runs to the
end. A prompt longer than one CLIP window (75 tokens) is cut into windows, each encoded on
its own and joined, the cut moved back to a comma within 20 tokens when there is one. Each
token's embedding is scaled by its weight and the whole rescaled to its mean before
weighting (the WebUI's "Original" emphasis). Without this, `(medium shot)` would reach CLIP
as literal brackets and everything after the 77th token would be dropped.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from .errors import MultipassError

UP, DOWN = 1.1, 1 / 1.1
WINDOW = 75  # tokens a CLIP window holds besides its start and end tokens
COMMA_BACKTRACK = 20
TOKEN = re.compile(r"\\[()\[\]\\]|\\|\(|\[|:\s*([+-]?[.\d]+)\s*\)|\)|\]|[^\\()\[\]:]+|:")


def parse_weights(text: str) -> list[tuple[str, float]]:
    """Pieces of text with their attention weight, neighbours of equal weight joined."""
    pieces: list[list] = []
    open_round: list[int] = []
    open_square: list[int] = []

    def scale(start: int, factor: float) -> None:
        for piece in pieces[start:]:
            piece[1] *= factor

    for match in TOKEN.finditer(text):
        token, weight = match.group(0), match.group(1)
        if token.startswith("\\"):  # an escaped bracket or backslash; a lone backslash is dropped
            pieces.append([token[1:], 1.0])
        elif token == "(":
            open_round.append(len(pieces))
        elif token == "[":
            open_square.append(len(pieces))
        elif weight is not None and open_round:
            try:
                scale(open_round.pop(), float(weight))
            except ValueError:
                raise MultipassError(f"prompt weight {weight!r} in {text!r} is not a number: write (word:1.2)") from None
        elif token == ")" and open_round:
            scale(open_round.pop(), UP)
        elif token == "]" and open_square:
            scale(open_square.pop(), DOWN)
        else:
            pieces.append([token, 1.0])
    for start in open_round:
        scale(start, UP)
    for start in open_square:
        scale(start, DOWN)
    joined: list[list] = []
    for piece in pieces:
        if joined and joined[-1][1] == piece[1]:
            joined[-1][0] += piece[0]
        else:
            joined.append(piece)
    return [(text, weight) for text, weight in joined] or [("", 1.0)]


def weighted_tokens(text: str, tokenize: Callable[[str], list[int]]) -> tuple[list[int], list[float]]:
    """The prompt's token ids (no start/end tokens) and each one's weight."""
    ids: list[int] = []
    weights: list[float] = []
    for piece, weight in parse_weights(text):
        piece_ids = tokenize(piece)
        ids += piece_ids
        weights += [weight] * len(piece_ids)
    return ids, weights


def windows(ids: Sequence[int], weights: Sequence[float], comma: int | None) -> list[tuple[list[int], list[float]]]:
    """Cut into windows of at most WINDOW tokens, at the last comma of a window's last
    COMMA_BACKTRACK tokens where there is one (a phrase is not split between windows)."""
    out: list[tuple[list[int], list[float]]] = []
    start = 0
    while True:
        end = min(start + WINDOW, len(ids))
        if end < len(ids) and comma is not None:
            commas = [i for i in range(max(start, end - COMMA_BACKTRACK), end) if ids[i] == comma]
            if commas:
                end = commas[-1] + 1
        out.append((list(ids[start:end]), list(weights[start:end])))
        start = end
        if start >= len(ids):
            return out


def emphasize(embeddings, weights: Sequence[float]):
    """(1, 77, dim) embeddings of one window (a torch tensor) scaled token by token, then
    brought back to their mean before weighting. All weights 1: unchanged, bit for bit."""
    before = embeddings.mean()
    scaled = embeddings * embeddings.new_tensor(list(weights))[None, :, None]
    after = scaled.mean()
    return scaled * (before / after) if after != 0 else scaled
