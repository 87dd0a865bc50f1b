"""The prompt grammar (DESIGN.md §1): segments, roles, flags, LoRA tags, errors, round trip."""

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from lib_multipass.errors import PromptError
from lib_multipass.options import Length
from lib_multipass.prompt import LORA_RE, Job, LoraTag, Segment, format_job, parse, with_tags

DESIGN_EXAMPLE = """(medium shot) of a male model wearing hiking clothes, standing in a dense forest
BREAK photorealistic and highly detailed
BREAK ohwx man wearing hiking clothes and shoes <lora:960310:1.0> --mask_dilate 8"""


def test_design_example():
    job = parse(DESIGN_EXAMPLE)
    assert job.base.text == "(medium shot) of a male model wearing hiking clothes, standing in a dense forest"
    assert job.common.text == "photorealistic and highly detailed"
    assert [p.text for p in job.persons] == ["ohwx man wearing hiking clothes and shoes"]
    assert job.persons[0].loras == (LoraTag("960310", 1.0),)
    assert job.flags == {"mask_dilate": Length(8)}


@pytest.mark.parametrize(
    "prompt, roles, persons",
    [
        ("a forest", ["base"], []),
        ("a forest BREAK a man", ["base", "person_1"], ["a man"]),
        ("a forest BREAK photo BREAK a man", ["base", "common", "person_1"], ["a man"]),
        ("a BREAK b BREAK c BREAK d BREAK e", ["base", "common", "person_1", "person_2", "person_3"], ["c", "d", "e"]),
    ],
)
def test_segment_roles_by_count(prompt, roles, persons):
    job = parse(prompt)
    assert job.segment_names() == roles
    assert [p.text for p in job.persons] == persons


def test_common_only_with_three_or_more_segments():
    assert parse("a BREAK b").common.text == ""
    assert parse("a BREAK b BREAK c").common.text == "b"


@pytest.mark.parametrize("prompt", ["BREAKFAST in a cafe", "break the rules", "a BREAK_1 b", "aBREAK b", "Break"])
def test_break_is_an_upper_case_whole_word(prompt):
    assert len(parse(prompt).segments) == 1


def test_break_with_any_whitespace_and_empty_segments():
    job = parse("a\n\nBREAK\n\tb BREAK BREAK")
    assert [s.text for s in job.segments] == ["a", "b", "", ""]


def test_attention_syntax_embeddings_and_other_networks_untouched():
    text = "(masterpiece:1.2), [cat:dog:0.5], ((red)) hat, embedding_x, __wildcard__, <hypernet:h:0.5>"
    assert parse(text).base.text == text


def test_lora_and_lyco_tags():
    job = parse("a BREAK b <lora:x> <lyco:y:0.5> <lora:z:0.8:0.3> <lora:w:te=0.5> <lora:sub/dir.v2:-1>")
    assert job.persons[0].text == "b"
    assert job.persons[0].loras == (
        LoraTag("x", 1.0),
        LoraTag("y", 0.5, "lyco"),
        LoraTag("z", 0.8, "lora", ("0.3",)),
        LoraTag("w", 1.0, "lora", ("te=0.5",)),
        LoraTag("sub/dir.v2", -1.0),
    )


def test_tags_removed_as_the_webui_does():
    assert parse("photo <lora:a:1>, man").base.text == "photo, man"
    assert parse("dog,--mask_invert").flags == {"mask_invert": True}
    assert parse("a--b and x--y").base.text == "a--b and x--y"  # not a flag name: text


@pytest.mark.parametrize("prompt, offset", [("dog<lora:a:1>x--mask_invert", 14),
                                            ("a BREAK b --mask_prompt person--mask_dilate 4", 30)])
def test_a_known_flag_stuck_to_a_word_is_an_error_that_shows_where(prompt, offset):
    with pytest.raises(PromptError, match="stuck to the word before it") as info:
        parse(prompt)
    assert info.value.offset == offset


def test_flags_with_an_equals_sign():
    job = parse("a BREAK b --mask_dilate=-20 --mask_prompt=red dress --mask_invert")
    assert job.flags == {"mask_dilate": Length(-20), "mask_prompt": ("red", "dress"), "mask_invert": True}
    assert parse("a BREAK b --mask_dilate=-20%").flags["mask_dilate"] == Length(-20, True)


@pytest.mark.parametrize("weight", ["1e308", "-11", "inf"])
def test_lora_weight_out_of_range_is_refused(weight):
    with pytest.raises(PromptError, match="from -10 to 10"):
        parse(f"a BREAK man <lora:x:{weight}>")


@pytest.mark.parametrize("terms", [("a|b",), ('say "hi"',), ("-x",), ("back\\slash", "é ü 中文"), ("",)])
def test_terms_with_pipes_quotes_dashes_and_unicode_round_trip(terms):
    job = Job((Segment("a"), Segment("b")), ("",), {"mask_prompt": terms} if terms != ("",) else {"mask_negative": ()})
    assert parse(*format_job(job)) == job


@pytest.mark.parametrize(
    "flag, value",
    [
        ("--mask_prompt person", ("person",)),
        ("--mask_prompt red dress | hat", ("red dress", "hat")),
        ('--mask_negative clothes hat "hiking boots"', ("clothes", "hat", "hiking boots")),
        ("--mask_invert", True),
        ("--mask_invert false", False),
        ("--mask_dilate -20", Length(-20)),
        ("--mask_dilate -20%", Length(-20, True)),
        ("--mask_blur 12", 12),
        ("--mask_threshold 0.3", 0.3),
        ("--denoising_strength 1", 1.0),
        ("--hires_denoising_strength 0.4", 0.4),
        ("--face_denoising_strength 0.2", 0.2),
        ("--controlnet_conditioning_scale 1.5", 1.5),
        ("--base_loras", True),
    ],
)
def test_every_flag_typed(flag, value):
    name = flag.split()[0][2:]
    job = parse(f"scene BREAK man {flag}")
    assert job.flags == {name: value}
    assert job.persons[0].text == "man"


def test_flags_anywhere_values_end_at_line_end_or_next_flag():
    job = parse("scene --mask_blur 3\nin the rain --mask_invert --mask_prompt dog BREAK man --mask_threshold 0.2")
    assert job.base.text == "scene in the rain"
    assert job.flags == {"mask_blur": 3, "mask_invert": True, "mask_prompt": ("dog",), "mask_threshold": 0.2}


def test_double_dash_inside_words_is_text():
    assert parse("a--b -- c").flags == {}


@pytest.mark.parametrize(
    "prompt, offset, flag, words",
    [
        ("man --mask_blurr 3", 4, "mask_blurr", ["unknown flag --mask_blurr", "--mask_blur"]),
        ("man --mask_threshold 1.5", 21, "mask_threshold", ["from 0 to 1", "1.5"]),
        ("man --mask_blur", 4, "mask_blur", ["mask_blur"]),
        ("man --mask_blur 2.5", 16, "mask_blur", ["whole number"]),
        ("man --mask_dilate big", 18, "mask_dilate", ["percent"]),
        ("man --mask_invert maybe", 18, "mask_invert", ["true or false"]),
        ("man --mask_blur 1 2", 16, "mask_blur", ["one value"]),
        ("man --mask_prompt", 4, "mask_prompt", ["needs a value"]),
        ("a BREAK man --mask_blur 1 --mask_blur 2", 26, "mask_blur", ["twice"]),
        ('man --mask_prompt "red dress', 18, None, ["unterminated quote"]),
    ],
)
def test_flag_errors_name_flag_and_offset(prompt, offset, flag, words):
    with pytest.raises(PromptError) as info:
        parse(prompt)
    assert info.value.offset == offset
    assert info.value.flag == flag
    for word in words:
        assert word in str(info.value)
    assert f"at character {offset}" in str(info.value)


@pytest.mark.parametrize("tag, offset", [("<lora:x:strong>", 8), ("<lora::1>", 8), ("<lora:x:nan>", 8)])
def test_lora_tag_errors(tag, offset):
    with pytest.raises(PromptError) as info:
        parse(f"a BREAK {tag}")
    assert info.value.offset == offset


def test_negative_shared_or_by_segment():
    shared = parse("a BREAK b BREAK c", "ugly")
    assert shared.negative_for("base") == shared.negative_for("person_1") == "ugly"
    split = parse("a BREAK b BREAK c", "bad scene BREAK bad BREAK bad hands")
    assert split.negative_for("base") == "bad scene, bad"
    assert split.negative_for("person_1") == "bad hands, bad"


def test_negative_segment_count_must_match():
    with pytest.raises(PromptError, match="negative prompt has 2 BREAK segments but the prompt has 3"):
        parse("a BREAK b BREAK c", "x BREAK y")


def test_format_round_trip_of_example():
    job = parse(DESIGN_EXAMPLE, "bad BREAK worse BREAK awful")
    assert parse(*format_job(job)) == job


# -- property-based round trip ------------------------------------------------------------------

words = st.text(alphabet="abcdefghijklmnopqrstuvwxyz()[]:,.0123456789", min_size=1, max_size=8)
texts = st.lists(words, max_size=5).map(" ".join)
loras = st.builds(
    LoraTag,
    name=st.text(alphabet="abcxyz_0123456789.-", min_size=1, max_size=6),
    weight=st.floats(-2, 2, allow_nan=False).map(lambda w: round(w, 3)),
    kind=st.sampled_from(["lora", "lyco"]),
)
segments = st.builds(Segment, text=texts.map(lambda t: parse(t).base.text if t else ""),
                     loras=st.lists(loras, max_size=2).map(tuple))
flag_values = st.fixed_dictionaries(
    {},
    optional={
        "mask_prompt": st.lists(st.text(alphabet='ab |"\\-é中', min_size=1, max_size=6).map(str.strip).filter(bool),
                                min_size=1, max_size=3).map(tuple),
        "mask_invert": st.booleans(),
        "mask_dilate": st.builds(Length, st.integers(-50, 50).map(float), st.booleans()),
        "mask_blur": st.integers(0, 64),
        "mask_threshold": st.floats(0, 1).map(lambda v: round(v, 4)),
        "base_loras": st.booleans(),
    },
)


@settings(max_examples=150, deadline=None)
@given(segs=st.lists(segments, min_size=1, max_size=5), flags=flag_values, negative=texts)
def test_round_trip_property(segs, flags, negative):
    job = Job(tuple(segs), (parse("", negative).negative[0],), flags)
    assert parse(*format_job(job)) == job


PIECES = list("ab ,:<>()\n-_\"|%0.1") + ["BREAK", "--mask_blur", "--mask_invert", "<lora:x:0.5>", "lora"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=30).map("".join))
@example("<<lora:x:0.5>lora:")  # a stray "<lora:" left as text: the tag must not close it on the way back
def test_parse_never_crashes_and_reparses(text):
    try:
        job = parse(text)
    except PromptError:
        return
    assert parse(*format_job(job)) == job


def test_a_pass_prompt_ending_in_a_stray_lora_opening_keeps_its_tags_whole():
    """The WebUI's nested pass reads the tags from the text: one after a stray `<lora:` would
    close it into a single, wrong tag."""
    prompt = with_tags("man, photo <lora:", (LoraTag("ohwx", 0.8),))
    assert LORA_RE.findall(prompt) == [("lora", "ohwx:0.8")] and prompt.endswith("<lora:")
    assert with_tags("man", (LoraTag("ohwx", 0.8),)) == "man <lora:ohwx:0.8>"
