"""Options (validation, dict conversion, flags win) and the pure pass plan."""

import json

import pytest

from lib_multipass.errors import OptionsError
from lib_multipass.options import Length, MultipassOptions, option_specs
from lib_multipass.plan import Generation, make_plan
from lib_multipass.prompt import LoraTag, parse


def test_defaults_and_round_trip_through_dict():
    options = MultipassOptions()
    assert options.denoising_strength == 0.75
    assert options.mask_prompt == ("person",)
    changed = MultipassOptions.from_dict({"mask_dilate": "-20%", "mask_prompt": "red dress | hat", "person_cfg": 5})
    assert changed.mask_dilate == Length(-20, True)
    assert changed.mask_prompt == ("red dress", "hat")
    data = json.loads(json.dumps(changed.to_dict()))
    assert MultipassOptions.from_dict(data) == changed


@pytest.mark.parametrize(
    "values, field, words",
    [
        ({"denoising_strength": 1.5}, "denoising_strength", "from 0 to 1"),
        ({"denoising_strength": "high"}, "denoising_strength", "a number"),
        ({"mask_blur": 2.5}, "mask_blur", "whole number"),
        ({"mask_blur": True}, "mask_blur", "whole number"),
        ({"mask_invert": "maybe"}, "mask_invert", "true or false"),
        ({"mask_dilate": "1.5"}, "mask_dilate", "whole pixels"),
        ({"person_sampler": 3}, "person_sampler", "must be text"),
        ({"mask_threshhold": 0.3}, "mask_threshhold", "did you mean mask_threshold"),
        ({"enabled": None}, "enabled", "needs a value"),
        ({"mask_threshold": float("nan")}, "mask_threshold", "a number"),
    ],
)
def test_bad_values_name_the_field(values, field, words):
    with pytest.raises(OptionsError) as info:
        MultipassOptions.from_dict(values)
    assert info.value.field == field
    assert words in str(info.value)


def test_optional_values_blank_means_unset():
    options = MultipassOptions.from_dict({"person_steps": "", "person_sampler": ""})
    assert options.person_steps is None and options.person_sampler is None


def test_flags_win_over_given_values():
    options = MultipassOptions.from_dict({"mask_blur": 10, "denoising_strength": 0.5})
    plan = make_plan(parse("a BREAK b --mask_blur 2"), options, Generation())
    assert plan.options.mask_blur == 2
    assert plan.options.denoising_strength == 0.5


def test_infotext_params_only_changed_values():
    params = MultipassOptions.from_dict({"mask_blur": 10, "mask_prompt": "a | b c"}).infotext_params()
    assert params == {"Multipass mask blur": "10", "Multipass mask prompt": "a | b c"}
    labels = [spec.label for spec in option_specs().values()]
    assert len(labels) == len(set(labels))


def test_generation_checks():
    with pytest.raises(OptionsError, match="multiple of 8"):
        Generation(width=500)
    with pytest.raises(OptionsError, match="needs a name"):
        Generation(sampler="")


def test_plan_passes_prompts_loras_seeds():
    job = parse(
        "forest <lora:style:0.5> BREAK photo <lora:film:0.3> BREAK man <lora:a:1> BREAK woman <lora:b:0.7>",
        "bad",
    )
    plan = make_plan(job, MultipassOptions(), Generation(seed=100, steps=30, width=512, height=768))
    base, first, second = plan.passes
    assert (base.kind, base.prompt, base.loras, base.seed, base.denoise) == ("base", "forest, photo", (), 100, 1.0)
    assert first.prompt == "man, photo" and second.prompt == "woman, photo"
    assert first.loras == (LoraTag("film", 0.3), LoraTag("a", 1.0))
    assert second.loras == (LoraTag("film", 0.3), LoraTag("b", 0.7))
    assert (first.seed, second.seed) == (101, 102)
    assert (first.mask.instance, second.mask.instance) == (0, 1)
    assert (first.width, first.height, first.steps, first.denoise) == (512, 768, 30, 0.75)
    assert first.negative == "bad"


def test_plan_single_person_uses_all_subjects_and_overrides():
    options = MultipassOptions.from_dict(
        {"person_steps": 12, "person_cfg": 4.5, "person_sampler": "euler", "person_seed": 7, "base_loras": True}
    )
    plan = make_plan(parse("scene <lora:s:1> BREAK man <lora:a>"), options, Generation(seed=1))
    base, person = plan.passes
    assert base.loras == (LoraTag("s", 1.0),)
    assert person.mask.instance is None
    assert (person.steps, person.cfg_scale, person.sampler, person.seed) == (12, 4.5, "euler", 7)


def test_plan_is_pure_and_single_segment_is_one_pass():
    job = parse("a BREAK b BREAK c --mask_invert")
    args = (job, MultipassOptions(), Generation(seed=3))
    assert make_plan(*args) == make_plan(*args)
    assert make_plan(*args).to_json() == make_plan(*args).to_json()
    assert len(make_plan(parse("just a scene"), MultipassOptions(), Generation()).passes) == 1
    disabled = make_plan(job, MultipassOptions(enabled=False), Generation())
    assert [p.kind for p in disabled.passes] == ["base"]


def test_one_segment_prompt_keeps_its_loras_unless_it_is_masked():
    plain = make_plan(parse("ohwx man <lora:ohwx:1>"), MultipassOptions(), Generation())
    assert [p.kind for p in plain.passes] == ["base"] and [lora.name for lora in plain.base.loras] == ["ohwx"]
    masked = make_plan(parse("ohwx man <lora:ohwx:1> --mask_dilate 4"), MultipassOptions(), Generation())
    assert masked.base.loras == () and [lora.name for lora in masked.persons[0].loras] == ["ohwx"]


def test_base_pass_never_gets_person_loras():
    plan = make_plan(parse("scene <lora:x:1> BREAK common <lora:y> BREAK man <lora:z>"), MultipassOptions(), Generation())
    assert plan.base.loras == ()
    assert plan.base.prompt == "scene, common"


def test_readme_names_every_option():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    missing = [name for name in option_specs() if f"`{name}`" not in readme and f"`--{name}`" not in readme]
    assert missing == []


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

ANY_VALUE = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                      st.text(max_size=12), st.lists(st.text(max_size=5), max_size=3))


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(sorted(option_specs())), value=ANY_VALUE)
def test_any_value_of_any_option_converts_or_names_the_option(name, value):
    try:
        options = MultipassOptions.from_dict({name: value})
    except OptionsError as err:
        assert err.field == name and name in str(err)
        return
    assert MultipassOptions.from_dict(options.to_dict()) == options  # and it round-trips


def test_every_example_prompt_in_the_readme_plans():
    """The prompts users copy from README's "Example prompts" parse and plan as written."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Example prompts", 1)[1].split("\n## ", 1)[0]
    blocks = [b for b in re.findall(r"```\n(.*?)```", section, flags=re.S) if "python -m" not in b]
    assert len(blocks) >= 4
    for block in blocks:
        plan = make_plan(parse(" ".join(block.split())), MultipassOptions(), Generation())
        assert len(plan.passes) >= 2, block
