"""Prompt emphasis and long prompts in the standalone engine, as the WebUI reads them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lib_multipass.engines.base import GenerateRequest
from lib_multipass.prompt_weights import parse_weights, windows

# the WebUI's own rules, case by case: each row is what 1.10.1's modules/prompt_parser.py
# (parse_prompt_attention) returns for it, run side by side (25 cases, no difference)
TABLE = [
    ("normal text", [("normal text", 1.0)]),
    ("an (important) word", [("an ", 1.0), ("important", 1.1), (" word", 1.0)]),
    ("(unbalanced", [("unbalanced", 1.1)]),
    ("\\(literal\\]", [("(literal]", 1.0)]),
    ("(unnecessary)(parens)", [("unnecessaryparens", 1.1)]),
    ("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
     [("a ", 1.0), ("house", 1.5730000000000004), (" ", 1.1), ("on", 1.0), (" a ", 1.1), ("hill", 0.55),
      (", sun, ", 1.1), ("sky", 1.4641000000000006), (".", 1.1)]),
    ("[less] and [[much less]]", [("less", 1 / 1.1), (" and ", 1.0), ("much less", 1 / 1.1 / 1.1)]),
    ("(word:1.2) and (two words: 0.8)", [("word", 1.2), (" and ", 1.0), ("two words", 0.8)]),
    ("a: colon, and (nested (weight:2))", [("a: colon, and ", 1.0), ("nested ", 1.1), ("weight", 2.2)]),
    ("a ((b) c", [("a ", 1.0), ("b", 1.21), (" c", 1.1)]),
    ("(a]b)", [("a]b", 1.1)]),
    ("a (b:-1) c", [("a ", 1.0), ("b", -1.0), (" c", 1.0)]),
    ("(a))", [("a", 1.1), (")", 1.0)]),
    ("\\(a:1.2\\)", [("(a:1.2)", 1.0)]),
    ("", [("", 1.0)]),
]


@pytest.mark.parametrize("text, expected", TABLE)
def test_attention_is_parsed_as_the_webui_parses_it(text, expected):
    parsed = parse_weights(text)
    assert [piece for piece, _ in parsed] == [piece for piece, _ in expected]
    assert [weight for _, weight in parsed] == pytest.approx([weight for _, weight in expected])


def test_long_prompts_are_cut_into_windows_at_a_comma_near_the_end():
    ids = list(range(100, 260))  # 160 tokens, a comma (id 7) at 70 and at 150
    ids[70] = ids[150] = 7
    cut = windows(ids, [1.0] * len(ids), comma=7)
    assert [len(part) for part, _ in cut] == [71, 75, 14]
    assert [len(part) for part, _ in windows(ids, [1.0] * len(ids), comma=None)] == [75, 75, 10]
    assert windows([], [], comma=7) == [([], [])]


def embeds(engine, prompt, negative=""):
    found = engine.encode_prompts(prompt, negative)
    return found["prompt_embeds"], found["negative_prompt_embeds"]


def test_plain_prompts_embed_exactly_as_diffusers_does(engine):
    mine, negative = embeds(engine, "a photo of a forest", "blurry")
    theirs, theirs_negative = engine.pipe.encode_prompt("a photo of a forest", "cpu", 1, True, "blurry")
    assert torch.equal(mine, theirs) and torch.equal(negative, theirs_negative)


def test_weights_and_long_prompts_change_the_embedding(engine):
    plain, _ = embeds(engine, "a red car")
    same, _ = embeds(engine, "a (red:1.0) car")
    stronger, _ = embeds(engine, "a (red:1.5) car")
    assert torch.equal(plain, same) and not torch.equal(plain, stronger)
    long = ", ".join(["a red car on a hill"] * 20)
    positive, negative = embeds(engine, long)
    assert positive.shape[1] == negative.shape[1] >= 77 * 2  # every word counts; the negative padded to match
    assert positive.shape[1] % 77 == 0


def test_a_weighted_long_prompt_generates_reproducibly_and_differs_from_plain_text(engine):
    request = GenerateRequest("(a forest:1.4), " + "tall trees, " * 40, "", (), 3, 2, 5.0, "euler", 64, 64)
    first, again = np.asarray(engine.txt2img(request)), np.asarray(engine.txt2img(request))
    engine.weighted_prompts = False
    try:
        plain = np.asarray(engine.txt2img(request))
    finally:
        engine.weighted_prompts = True
    assert np.array_equal(first, again) and not np.array_equal(first, plain)


def test_a_weight_that_is_not_a_number_fails_before_any_model_loads(tmp_path):
    from lib_multipass.errors import MultipassError
    from lib_multipass.standalone.cli import build_parser
    from lib_multipass.standalone.job import plan_from_args

    args = build_parser().parse_args(["run", "--checkpoint", "x", "--prompt", "a (forest:1.2.3) BREAK man",
                                      "--out", str(tmp_path)])
    with pytest.raises(MultipassError, match="prompt weight '1.2.3'.*not a number"):
        plan_from_args(args)
    assert parse_weights("a\\b") == [("ab", 1.0)]  # a lone backslash is dropped, as in the WebUI
