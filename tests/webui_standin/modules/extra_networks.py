"""modules/extra_networks.py: `<name:args>` tags are cut from prompts and activated per batch."""

import re

re_extra_net = re.compile(r"<(\w+):([^>]+)>")
activations: list[list[str]] = []  # LoRA names active for each sampling call, in order


def parse_prompt(prompt):
    found = []

    def found_tag(m):
        found.append((m.group(1), m.group(2).split(":")))
        return ""

    return re.sub(re_extra_net, found_tag, prompt), found


def parse_prompts(prompts):
    res, data = [], []
    for prompt in prompts:
        updated, found = parse_prompt(prompt)
        data.extend(found)
        res.append(updated)
    return res, data


def activate(p, extra_network_data):
    """Records the LoRAs; on Forge (a model with a patcher set) its LoRA extension loads them,
    and an error there is reported and swallowed, as the WebUI does."""
    names = [args[0] for kind, args in extra_network_data if kind in ("lora", "lyco")]
    activations.append(names)
    if hasattr(p.sd_model, "load_networks"):
        from modules import errors

        try:
            p.sd_model.load_networks(names)
        except Exception as err:  # noqa: BLE001
            errors.report(f"activating extra network lora: {err}")
