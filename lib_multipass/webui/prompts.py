"""Prompts as the WebUI sees them: styles folded into the common segment, LoRA tags re-added.

Rule for styles: the WebUI appends (or wraps, with `{prompt}`) style text around the
whole prompt, so it would land in the last person segment or inside its flags. The text
a style adds is moved to the common segment (made when the prompt has none), so it
reaches every pass, as a style is meant to.
"""

from __future__ import annotations

from ..prompt import BREAK_RE, Job, Segment, join_prompt, parse


def split_style(styled: str, original: str) -> tuple[str, str] | None:
    """(before, after): the text styles put around `original`; None when it is not inside."""
    at = styled.find(original) if original else -1
    if at < 0:
        return None
    return styled[:at].strip(" ,\n"), styled[at + len(original) :].strip(" ,\n")


def _add_common(job_segments: list, prefix: str, suffix: str, make) -> list:
    if len(job_segments) == 1:
        return [make(job_segments[0], prefix, suffix)]
    if len(job_segments) == 2:
        job_segments = [job_segments[0], make(None, "", ""), job_segments[1]]
    return [job_segments[0], make(job_segments[1], prefix, suffix), *job_segments[2:]]


def parse_styled(prompt: str, negative: str, original: str | None = None, original_negative: str | None = None) -> Job:
    """Parse a WebUI prompt after styles were applied, putting style text in the common segment."""
    around = split_style(prompt, original) if original is not None else None
    if original is None or around is None:  # no original to compare with (wildcards changed it): as is
        return parse(prompt, negative)
    around_negative = None
    if original_negative is not None and BREAK_RE.search(original_negative):
        around_negative = split_style(negative, original_negative)
    job = parse(original, original_negative if around_negative and original_negative is not None else negative)
    if around == ("", "") and not any(around_negative or ()):
        return job

    def segment(seg: Segment | None, before: str, after: str) -> Segment:
        seg = seg or Segment("")
        return Segment(join_prompt(before, seg.text, after), seg.loras)

    segments = _add_common(list(job.segments), *around, segment)
    negatives = list(job.negative)
    if len(negatives) > 1:
        negatives = _add_common(negatives, *(around_negative or ("", "")), lambda t, b, a: join_prompt(b, t or "", a))
    return Job(tuple(segments), tuple(negatives), job.flags)
