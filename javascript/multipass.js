// sd-webui-multipass: labels the BREAK segments of the txt2img/img2img prompt boxes
// (base / common / person N) while typing. It only adds a strip below each prompt box and
// never touches the textarea, so the WebUI's and other extensions' decorations keep working.
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
        var update = function () { render(strip, box.value); };
        box.addEventListener("input", update);
        box.addEventListener("change", update);
        update();
        return true;
    }

    function attachAll(root) {
        return ["txt2img", "img2img"].filter(function (tab) { return attach(root, tab); }).length;
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
