// sd-webui-multipass: labels the BREAK segments of the txt2img/img2img prompt boxes
// (base / common / person N) while typing, and keeps the plan summary in the Multipass
// accordion up to date. It only adds a strip below each prompt box and never touches the
// textarea, so the WebUI's and other extensions' decorations keep working.
(function () {
    "use strict";

    var BREAK_RE = /\bBREAK\b/g;

    // Roles by segment count, as lib_multipass/prompt.py: 1 base; 2 base, person;
    // 3 base, common, person; 4+ base, common, person 1..N.
    function roleNames(count) {
        if (count === 1) return ["base"];
        if (count === 2) return ["base", "person 1"];
        var names = ["base", "common"];
        for (var i = 1; i <= count - 2; i++) names.push("person " + i);
        return names;
    }

    // Pure: the segments of a prompt with their role, text and character range.
    function multipassSegments(text) {
        var pieces = [];
        var start = 0;
        var match;
        BREAK_RE.lastIndex = 0;
        while ((match = BREAK_RE.exec(text)) !== null) {
            pieces.push([start, match.index]);
            start = match.index + match[0].length;
        }
        pieces.push([start, text.length]);
        var roles = roleNames(pieces.length);
        return pieces.map(function (range, i) {
            return {role: roles[i], start: range[0], end: range[1], text: text.slice(range[0], range[1]).trim()};
        });
    }

    function shorten(text, length) {
        var flat = text.replace(/\s+/g, " ");
        return flat.length > length ? flat.slice(0, length - 1) + "\u2026" : flat;
    }

    function render(strip, text) {
        var segments = multipassSegments(text);
        strip.textContent = "";
        strip.hidden = segments.length < 2;
        segments.forEach(function (segment) {
            var chip = document.createElement("span");
            chip.className = "multipass-segment multipass-" + segment.role.replace(" ", "-").replace(/[0-9]+$/, "n");
            chip.dataset.role = segment.role;
            chip.title = segment.text;
            var role = document.createElement("b");
            role.textContent = segment.role;
            chip.appendChild(role);
            chip.appendChild(document.createTextNode(" " + shorten(segment.text, 40)));
            strip.appendChild(chip);
        });
    }

    function attach(root, tab) {
        var box = root.querySelector("#" + tab + "_prompt textarea");
        if (!box || box.dataset.multipassLabelled) return false;
        box.dataset.multipassLabelled = "1";
        var strip = document.createElement("div");
        strip.className = "multipass-segments";
        strip.id = "multipass_" + tab + "_segments";
        var wrapper = box.closest("label") || box.parentElement;
        wrapper.parentElement.insertBefore(strip, wrapper.nextSibling);
        var shown = null;
        var update = function () {
            if (box.value === shown) return;
            shown = box.value;
            render(strip, shown);
        };
        box.addEventListener("input", update);
        box.addEventListener("change", update);
        // the WebUI sets the box without events (Send to img2img, PNG Info paste): look now and then
        if (typeof setInterval === "function" && typeof window !== "undefined") setInterval(update, 700);
        update();
        return true;
    }

    function attachAll(root) {
        return ["txt2img", "img2img"].filter(function (tab) {
            var labelled = attach(root, tab);
            attachSummary(root, tab);
            return labelled;
        }).length;
    }

    // The controls the summary depends on, read from the page by option name.
    var CONTROLS = ["enabled", "base_loras", "denoising_strength", "mask_prompt", "mask_negative", "mask_dilate",
                    "mask_threshold", "mask_blur", "mask_invert", "person_steps", "person_cfg", "person_sampler",
                    "inpaint_faces", "face_denoising_strength", "face_swap"];

    function controlValue(root, tab, name) {
        var block = root.querySelector("#multipass_" + tab + "_" + name);
        if (!block) return undefined;
        var box = block.querySelector("input[type=checkbox]");
        if (box) return box.checked;
        var number = block.querySelector("input[type=number]");
        if (number) return number.value === "" ? undefined : Number(number.value);
        var field = block.querySelector("textarea, input");
        return field ? field.value : undefined;
    }

    // Debounced; every answer carries its request number and only the newest one is shown,
    // so the summary never lags behind the prompt (Gradio's own events drop changes while
    // a request runs).
    function attachSummary(root, tab) {
        var box = root.querySelector("#" + tab + "_prompt textarea");
        var plan = root.querySelector("#multipass_" + tab + "_plan");
        var accordion = root.querySelector("#multipass_" + tab);
        if (!box || !plan || !accordion || plan.dataset.multipassLive) return;
        plan.dataset.multipassLive = "1";
        var negative = root.querySelector("#" + tab + "_neg_prompt textarea");
        var sent = 0, timer = null;
        var refresh = function () {
            var number = ++sent;
            var ui = {};
            CONTROLS.forEach(function (name) {
                var value = controlValue(root, tab, name);
                if (value !== undefined) ui[name] = value;
            });
            var size = ["width", "height"].map(function (side) {
                var field = root.querySelector("#" + tab + "_" + side + " input[type=number]");
                return field ? parseInt(field.value, 10) || 512 : 512;
            });
            var body = {prompt: box.value, negative_prompt: negative ? negative.value : "", ui: ui, size: size};
            fetch("./multipass/v1/summary", {method: "POST", headers: {"Content-Type": "application/json"},
                                             body: JSON.stringify(body)})
                .then(function (answer) { return answer.ok ? answer.json() : null; })
                .then(function (data) {
                    var target = plan.querySelector(".prose") || plan;
                    if (data && number === sent) target.innerHTML = data.html;
                })
                .catch(function () { /* the next edit asks again */ });
        };
        var later = function () {
            clearTimeout(timer);
            timer = setTimeout(refresh, 250);
        };
        [box, negative].forEach(function (field) { if (field) field.addEventListener("input", later); });
        var asked = box.value;
        setInterval(function () {  // a value the WebUI set without an event (Send to, paste)
            if (box.value !== asked) {
                asked = box.value;
                later();
            }
        }, 700);
        accordion.addEventListener("input", later);
        accordion.addEventListener("change", later);
        accordion.addEventListener("click", later);
        refresh();
    }

    if (typeof module !== "undefined" && module.exports) {
        module.exports = {multipassSegments: multipassSegments, roleNames: roleNames, attachAll: attachAll};
    }
    if (typeof window !== "undefined") {
        window.multipassAttachAll = attachAll;
        if (typeof onUiLoaded === "function") {
            onUiLoaded(function () { attachAll(gradioApp()); });
        } else {
            document.addEventListener("DOMContentLoaded", function () { attachAll(document); });
        }
    }
})();
