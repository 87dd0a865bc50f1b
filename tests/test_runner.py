"""The runner on the recording engine: pass order, masks per person, skips, failures, interrupts."""

import numpy as np
import pytest
from PIL import Image

from lib_multipass.engines.base import GenerateRequest, InpaintRequest
from lib_multipass.engines.recording import RecordingEngine, seed_colour
from lib_multipass.errors import ModelNotFoundError
from lib_multipass.options import MultipassOptions
from lib_multipass.plan import Generation, make_plan
from lib_multipass.prompt import parse
from lib_multipass.runner import run

GEN = Generation(seed=10, steps=4, width=64, height=64)


def two_people(image: Image.Image) -> np.ndarray:
    prob = np.zeros((64, 64), np.float32)
    prob[10:50, 5:20] = 0.9  # left subject
    prob[10:50, 40:60] = 0.9  # right subject
    return prob


def plan_for(prompt, **options):
    return make_plan(parse(prompt), MultipassOptions.from_dict(options), GEN)


def test_base_then_persons_with_their_masks_left_to_right():
    engine = RecordingEngine({"person": two_people}, loras=("a", "b"))
    plan = plan_for("scene BREAK photo BREAK man <lora:a> BREAK woman <lora:b>", mask_blur=0, mask_dilate=0)
    result = run(plan, engine)
    kinds = [type(r).__name__ if not isinstance(r, tuple) else r[0] for r in engine.requests]
    # no face anywhere, none near either subject: the whole-image map, split left to right
    assert kinds == ["GenerateRequest", "segment", "faces", "faces", "faces", "refine", "InpaintRequest",
                     "InpaintRequest"]
    first, second = engine.requests[6], engine.requests[7]
    assert first.mask[:, :30].any() and not first.mask[:, 30:].any()
    assert second.mask[:, 30:].any() and not second.mask[:, :30].any()
    assert [lora.name for lora in first.generate.loras] == ["a"]
    assert [lora.name for lora in second.generate.loras] == ["b"]
    assert list(result.images) == ["base", "person_1", "person_2"]
    final = np.asarray(result.final)
    assert tuple(final[30, 10]) == seed_colour(11) and tuple(final[30, 50]) == seed_colour(12)
    assert tuple(final[5, 30]) == seed_colour(10)  # outside both masks: the base image
    assert not result.warnings and result.error is None


def test_base_request_has_no_lora_and_base_prompt():
    engine = RecordingEngine({"person": two_people}, loras=("a",))
    run(plan_for("scene BREAK man <lora:a:0.7>"), engine)
    base = engine.requests[0]
    assert isinstance(base, GenerateRequest) and base.loras == () and base.prompt == "scene"
    person = [r for r in engine.requests if isinstance(r, InpaintRequest)][0]
    assert person.generate.loras[0].weight == 0.7


def test_more_prompts_than_subjects_skips_with_warning():
    engine = RecordingEngine({"person": lambda img: two_people(img) * (np.arange(64) < 30)}, loras=())
    result = run(plan_for("scene BREAK photo BREAK man BREAK woman"), engine)
    assert list(result.images) == ["base", "person_1"]
    assert "person_2 skipped" in result.warnings[0] and "1 subject(s) (x 5-20) for 2 person prompts" in result.warnings[0]


def test_empty_mask_skips_and_keeps_base():
    engine = RecordingEngine({}, loras=())
    result = run(plan_for("scene BREAK man --mask_prompt unicorn"), engine)
    assert list(result.images) == ["base"] and result.final is result.images["base"]
    assert "'unicorn'" in result.warnings[0] and "person_1 skipped" in result.warnings[0]


def test_mask_negative_and_invert():
    def hat(image):
        prob = np.zeros((64, 64), np.float32)
        prob[10:20, 5:20] = 0.9
        return prob

    engine = RecordingEngine({"person": two_people, "hat": hat})
    run(plan_for("scene BREAK man --mask_negative hat --mask_invert", mask_dilate=0), engine)
    mask = engine.requests[-1].mask
    assert mask[15, 10] and not mask[30, 10] and mask[5, 30]


def test_missing_lora_fails_before_anything_runs():
    engine = RecordingEngine({"person": two_people}, loras=("other",))
    with pytest.raises(ModelNotFoundError, match="other"):
        run(plan_for("scene BREAK man <lora:missing>"), engine)
    assert engine.requests == []


def test_failure_after_base_keeps_base():
    engine = RecordingEngine({"person": two_people})
    engine.inpaint = lambda request: (_ for _ in ()).throw(RuntimeError("out of memory"))
    result = run(plan_for("scene BREAK man"), engine)
    assert list(result.images) == ["base"] and "RuntimeError: out of memory" in result.error
    assert "kept" in result.warnings[-1]


def test_interrupt_before_person_pass():
    engine = RecordingEngine({"person": two_people}, stop_after=1)
    result = run(plan_for("scene BREAK man"), engine)
    assert result.interrupted and list(result.images) == ["base"]


def test_user_mask_image_replaces_segmentation(tmp_path):
    Image.new("L", (64, 64), 0).save(tmp_path / "m.png")
    image = Image.open(tmp_path / "m.png")
    image.paste(255, (0, 0, 32, 64))
    image.save(tmp_path / "m.png")
    engine = RecordingEngine({"person": two_people})
    run(plan_for("scene BREAK man", mask_image=str(tmp_path / "m.png"), mask_dilate=0), engine)
    assert not any(isinstance(r, tuple) for r in engine.requests)
    assert engine.requests[-1].mask[:, :32].all() and not engine.requests[-1].mask[:, 32:].any()


def test_prompt_masking_on_an_input_image(tmp_path):
    photo = Image.new("RGB", (80, 48), (10, 20, 30))
    photo.save(tmp_path / "photo.png")

    def subject(image):
        prob = np.zeros((48, 80), np.float32)
        prob[8:40, 30:50] = 0.9
        return prob

    engine = RecordingEngine({"foreground": subject})
    plan = make_plan(
        parse("a beach at sunset --mask_prompt foreground --mask_invert --mask_dilate 0"),
        MultipassOptions.from_dict({"input_image": str(tmp_path / "photo.png"), "mask_blur": 2}),
        GEN,
    )
    assert [p.kind for p in plan.passes] == ["input", "person"] and plan.persons[0].prompt == "a beach at sunset"
    result = run(plan, engine)
    assert not any(isinstance(r, GenerateRequest) for r in engine.requests)  # nothing generated for the base
    final, alpha = np.asarray(result.final), result.alphas["person_1"]
    assert final.shape == (48, 80, 3)
    assert (final[alpha == 0] == (10, 20, 30)).all() and alpha[20, 40] == 0  # the subject is kept
    assert tuple(final[2, 2]) == seed_colour(11)  # the rest is regenerated


def test_single_segment_with_a_mask_flag_repaints_the_mask():
    plan = plan_for("portrait of ohwx man <lora:a:0.8> --mask_prompt face")
    assert [p.kind for p in plan.passes] == ["base", "person"]
    assert plan.base.loras == () and plan.persons[0].loras[0].name == "a"
    assert [p.kind for p in plan_for("portrait of a man").passes] == ["base"]


def test_unreadable_input_image_fails_before_anything_runs(tmp_path):
    (tmp_path / "bad.jpg").write_text("nope")
    engine = RecordingEngine()
    plan = make_plan(parse("a beach"), MultipassOptions.from_dict({"input_image": str(tmp_path / "bad.jpg")}), GEN)
    with pytest.raises(Exception, match="input image .* cannot be read"):
        run(plan, engine)
    assert engine.requests == []


def test_full_mask_is_allowed():
    engine = RecordingEngine({"person": np.ones((64, 64), np.float32)})
    result = run(plan_for("scene BREAK man"), engine)
    assert result.alphas["person_1"].min() == 1.0 and not result.warnings
    assert (np.asarray(result.final) == seed_colour(11)).all()


def test_the_harmonizing_pass_redoes_the_whole_composite_last():
    engine = RecordingEngine({"person": two_people}, loras=("a",))
    plan = plan_for("scene BREAK photo BREAK man <lora:a> --hires_denoising_strength 0.3 --hires_scale 1.5")
    harmonize = plan.harmonize
    assert harmonize is plan.passes[-1] and harmonize.kind == "harmonize" and harmonize.denoise == 0.3
    # one person: the scene with that person's prompt and LoRA, so the low denoise keeps the likeness
    assert harmonize.prompt == "scene, man, photo" and [lora.name for lora in harmonize.loras] == ["a"]
    assert (harmonize.width, harmonize.height) == (96, 96) and harmonize.seed == GEN.seed + 2
    result = run(plan, engine)
    assert list(result.images) == ["base", "person_1", "harmonize"] and not result.warnings
    kind, request, denoise, upscaler = engine.requests[-2]
    assert kind == "img2img" and denoise == 0.3 and upscaler == "Lanczos" and (request.width, request.height) == (96, 96)
    composite = result.images["person_1"].resize((96, 96))
    painted = Image.new("RGB", (96, 96), seed_colour(harmonize.seed))
    assert np.array_equal(np.asarray(result.final), np.asarray(Image.blend(composite, painted, 0.3)))


def test_with_several_people_the_harmonizing_pass_has_the_scene_prompt_and_no_person_lora():
    plan = plan_for("scene <lora:s> BREAK photo BREAK man <lora:a> BREAK woman <lora:b> --hires_denoising_strength 0.2",
                    base_loras=True)
    assert plan.harmonize.prompt == plan.base.prompt == "scene, photo"
    assert plan.harmonize.loras == plan.base.loras and [lora.name for lora in plan.harmonize.loras] == ["s"]
    assert plan_for("scene BREAK man").harmonize is None


def test_an_upscale_past_the_largest_side_is_refused_before_anything_runs():
    from lib_multipass.errors import OptionsError

    with pytest.raises(OptionsError, match="hires_scale"):
        make_plan(parse("scene BREAK man --hires_denoising_strength 0.3 --hires_scale 4"), MultipassOptions(),
                  Generation(width=2048, height=1024))


def test_an_interrupt_before_the_harmonizing_pass_keeps_the_composite():
    engine = RecordingEngine({"person": two_people}, stop_after=2)
    result = run(plan_for("scene BREAK man --hires_denoising_strength 0.3"), engine)
    assert list(result.images) == ["base", "person_1"] and result.interrupted
    assert "before the harmonizing pass" in result.warnings[-1]


@pytest.mark.parametrize("stop_during,kept,stopped", [(1, ["base"], "person_1"), (2, ["base", "person_1"], "person_2")])
def test_a_pass_stopped_midway_is_discarded_and_named(stop_during, kept, stopped):
    engine = RecordingEngine({"person": two_people}, loras=("a", "b"), stop_during=stop_during)
    result = run(plan_for("scene BREAK photo BREAK man <lora:a> BREAK woman <lora:b>"), engine)
    assert list(result.images) == kept and result.interrupted and result.interrupted_pass == stopped
    assert f"interrupted during {stopped}: that pass is discarded" in result.warnings[-1]
    assert result.error is None  # an interrupt is not a failure


def test_a_face_pass_stopped_midway_is_discarded():
    from lib_multipass.faces.detect import Face

    engine = RecordingEngine({"person": two_people}, faces=[Face((6, 12, 18, 24), 0.9)], stop_during=2)
    result = run(plan_for("scene BREAK man", inpaint_faces=True, face_min_size=4), engine)
    assert list(result.images) == ["base", "person_1"] and result.interrupted_pass == "person_1_face_1"
