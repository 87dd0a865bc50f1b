"""The multipass prompt grammar: BREAK segments, `--flags` and `<lora:...>` tags.

Pure Python. The grammar owns only BREAK, flags and LoRA/LyCORIS tags; A1111 attention
syntax, embeddings, wildcards and other extra networks pass through untouched.
`parse(format_job(job)) == job` for every job.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from .errors import OptionsError, PromptError
from .options import convert, flag_specs, format_value

BREAK_RE = re.compile(r"\bBREAK\b")
# a flag starts the segment or follows whitespace, a comma or a tag's `>`
FLAG_RE = re.compile(r"(?:(?<=[\s,>])|^)--([A-Za-z][A-Za-z0-9_]*)=?")  # `--name value` or `--name=value`
GLUED_RE = re.compile(r"(?<=[^\s,>])--([A-Za-z][A-Za-z0-9_]*)")  # `person--mask_dilate`: a flag stuck to a word
MAX_LORA_WEIGHT = 10.0  # |weight| above this only saturates the image (1e308 gave NaN)
LORA_RE = re.compile(r"<(lora|lyco):([^>]*)>")
UNCLOSED_RE = re.compile(r"<(lora|lyco):[^>]*$")


@dataclass(frozen=True)
class LoraTag:
    """One `<lora:name:weight:...>` tag; `extra` keeps further arguments for the WebUI."""

    name: str
    weight: float = 1.0
    kind: str = "lora"
    extra: tuple[str, ...] = ()

    def tag(self) -> str:
        parts = [self.name, _number(self.weight), *self.extra]
        return f"<{self.kind}:{':'.join(parts)}>"


@dataclass(frozen=True)
class Segment:
    """One BREAK segment: its text (tags and flags removed) and its LoRA tags."""

    text: str
    loras: tuple[LoraTag, ...] = ()


@dataclass(frozen=True)
class Job:
    """A parsed prompt: segments, negative segments and the job's flags."""

    segments: tuple[Segment, ...]
    negative: tuple[str, ...] = ("",)
    flags: dict[str, Any] = field(default_factory=dict)

    @property
    def base(self) -> Segment:
        return self.segments[0]

    @property
    def common(self) -> Segment:
        return self.segments[1] if len(self.segments) >= 3 else Segment("")

    @property
    def persons(self) -> tuple[Segment, ...]:
        count = len(self.segments)
        return self.segments[1:] if count == 2 else self.segments[2:]

    def segment_names(self) -> list[str]:
        """Role of each segment: base, common, person_1..N."""
        count = len(self.segments)
        if count == 1:
            return ["base"]
        if count == 2:
            return ["base", "person_1"]
        return ["base", "common"] + [f"person_{i}" for i in range(1, count - 1)]

    def negative_for(self, role: str) -> str:
        """Negative prompt of the base pass (`"base"`) or of person pass `"person_i"`."""
        if len(self.negative) == 1:
            return self.negative[0]
        by_role = dict(zip(self.segment_names(), self.negative))
        return join_prompt(by_role[role], by_role.get("common", ""))


def join_prompt(*parts: str) -> str:
    """Join prompt parts with ", ", dropping empty ones."""
    return ", ".join(part for part in parts if part)


def parse(prompt: str, negative: str = "") -> Job:
    """Parse a prompt (and its negative) into a `Job`; raises `PromptError` with an offset."""
    flags: dict[str, Any] = {}
    segments = tuple(_parse_segment(text, start, flags) for text, start in _split(prompt))
    negatives = tuple(_clean(text) for text, _ in _split(negative))
    if len(negatives) > 1 and len(negatives) != len(segments):
        raise PromptError(
            f"the negative prompt has {len(negatives)} BREAK segments but the prompt has "
            f"{len(segments)}; write the same number of segments, or none to share one "
            "negative prompt across all passes",
            offset=0,
        )
    return Job(segments, negatives, flags)


def with_tags(text: str, loras: tuple[LoraTag, ...]) -> str:
    """`text` with its `<lora:...>` tags, for a host whose extra networks read them from the text
    (the WebUI) and for the formatted prompt; the tags first when the text ends in an unclosed
    `<lora:` (a tag after it would close it into one tag)."""
    tags = [lora.tag() for lora in loras]
    return " ".join([*tags, text] if UNCLOSED_RE.search(text) else [text, *tags]).strip()


def format_job(job: Job) -> tuple[str, str]:
    """The prompt and negative prompt that parse back to `job`."""
    texts = [with_tags(seg.text, seg.loras) for seg in job.segments]
    flags = " ".join(_format_flag(name, value) for name, value in job.flags.items())
    texts[-1] = f"{texts[-1]} {flags}".strip()
    return "\nBREAK ".join(texts), "\nBREAK ".join(job.negative)


# -- internals --------------------------------------------------------------------------


def _split(prompt: str) -> list[tuple[str, int]]:
    """BREAK segments with their start offsets."""
    pieces, start = [], 0
    for match in BREAK_RE.finditer(prompt):
        pieces.append((prompt[start : match.start()], start))
        start = match.end()
    pieces.append((prompt[start:], start))
    return pieces


def _clean(text: str) -> str:
    """Collapse whitespace left by removed tags/flags; no other change to the text."""
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r" ,", ",", text)
    return text.strip(" ,")


def _parse_segment(text: str, start: int, flags: dict[str, Any]) -> Segment:
    _refuse_glued_flags(text, start)
    prose: list[tuple[str, int]] = []
    pos = 0
    for name, name_at, value_at, end in _flag_spans(text, start):
        prose.append((text[pos:name_at], start + pos))
        _add_flag(flags, name, text[value_at:end], start + name_at, start + value_at)
        pos = end
    prose.append((text[pos:], start + pos))
    loras: list[LoraTag] = []
    kept = []
    for piece, offset in prose:
        for match in LORA_RE.finditer(piece):
            loras.append(_lora(match, offset + match.start()))
        kept.append(LORA_RE.sub("", piece))  # as the WebUI removes them
    return Segment(_clean(" ".join(kept)), tuple(loras))


def _refuse_glued_flags(text: str, start: int) -> None:
    """A known flag stuck to the word before it would silently become text (or a term)."""
    known = flag_specs()
    for match in GLUED_RE.finditer(text):
        if match.group(1) in known and not _inside_quotes(text, match.start()):
            raise PromptError(f"flag --{match.group(1)} is stuck to the word before it; put a space before --",
                              start + match.start(), flag=match.group(1))


def _inside_quotes(text: str, at: int) -> bool:
    return text.count('"', 0, at) % 2 == 1


def _flag_spans(text: str, start: int) -> list[tuple[str, int, int, int]]:
    """(name, flag offset, value offset, value end) per flag; values end at a newline or the next flag."""
    spans = []
    pos = 0
    while (match := FLAG_RE.search(text, pos)) is not None:
        end = _value_end(text, match.end(), start)
        spans.append((match.group(1), match.start(), match.end(), end))
        pos = end
    return spans


def _value_end(text: str, pos: int, start: int) -> int:
    quote_at = None
    escaped = False
    for i in range(pos, len(text)):
        char = text[i]
        if escaped:
            escaped = False
        elif char == "\\" and quote_at is not None:
            escaped = True
        elif char == '"':
            quote_at = None if quote_at is not None else i
        elif quote_at is None and (char == "\n" or (char.isspace() and FLAG_RE.match(text, i + 1))):
            return i
    if quote_at is not None:
        raise PromptError('unterminated quote in a flag value; close it with "', start + quote_at)
    return len(text)


def _tokens(value: str) -> list[str]:
    """Split a flag value: `|` separates terms; otherwise words, with "quoted terms" kept whole."""
    parts = [(_unescape(quoted) if quoted is not None and opened else None, bar, word)
             for opened, quoted, bar, word in re.findall(r'(")((?:\\.|[^"\\])*)"|(\|)|([^\s"|]+)', value)]
    if any(bar for _, bar, _ in parts):
        terms: list[str] = []
        current: list[str] = []
        for quoted, bar, word in parts:
            if bar:
                terms.append(" ".join(current))
                current = []
            else:
                current.append(quoted if quoted is not None else word)
        return terms + [" ".join(current)]
    return [quoted if quoted is not None else word for quoted, _, word in parts]


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def _add_flag(flags: dict[str, Any], name: str, raw: str, at: int, value_at: int) -> None:
    specs = flag_specs()
    if name not in specs:
        raise PromptError(
            f"unknown flag --{name}; known flags: {', '.join('--' + n for n in specs)}", at, flag=name
        )
    if name in flags:
        raise PromptError(f"flag --{name} is given twice; keep one", at, flag=name)
    spec = specs[name]
    tokens = _tokens(raw)
    try:
        if spec.kind == "terms":
            if not tokens:
                raise OptionsError(f"`{name}` needs a value ({spec.help})", name)
            value = convert(name, tokens)
        elif spec.kind == "bool" and not tokens:
            value = True
        elif len(tokens) != 1:
            expected = "true or false, or nothing" if spec.kind == "bool" else "one value"
            raise OptionsError(f"`{name}` takes {expected}, got {raw.strip()!r}", name)
        else:
            value = convert(name, tokens[0])
    except OptionsError as err:
        value_offset = value_at + len(raw) - len(raw.lstrip())
        raise PromptError(f"flag --{name}: {err}", value_offset if tokens else at, flag=name) from None
    flags[name] = value


def _lora(match: re.Match[str], at: int) -> LoraTag:
    kind, body = match.group(1), match.group(2)
    args = body.split(":")
    name = args[0].strip()
    if not name:
        raise PromptError(f"<{kind}:...> needs a name, as in <{kind}:name:0.8>", at)
    weight, extra = 1.0, tuple(args[1:])
    if extra and "=" not in extra[0]:
        try:
            weight = float(extra[0])
        except ValueError:
            weight = math.nan
        if not math.isfinite(weight) or abs(weight) > MAX_LORA_WEIGHT:
            raise PromptError(
                f"<{kind}:{name}:...> weight must be a number from -{MAX_LORA_WEIGHT:g} to {MAX_LORA_WEIGHT:g} "
                f"like 0.8, got {extra[0]!r}", at
            )
        extra = extra[1:]
    return LoraTag(name, weight, kind, extra)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _format_flag(name: str, value: Any) -> str:
    if value is True:
        return f"--{name}"
    if isinstance(value, tuple):
        body = " ".join(_quote(term) for term in value)
        return f"--{name} {body or chr(34) * 2}"
    return f"--{name} {format_value(value)}"


def _quote(term: str) -> str:
    """A term as a flag value token: quoted (with \\ escapes) unless it is one plain word."""
    if term and re.fullmatch(r"[^\s\"|\\-][^\s\"|\\]*", term):
        return term
    return '"' + term.replace("\\", "\\\\").replace('"', '\\"') + '"'
