// node --test tests/js: the pure segment-labelling logic of javascript/multipass.js.
const test = require("node:test");
const assert = require("node:assert");
const {multipassSegments, roleNames} = require("../../javascript/multipass.js");

test("roles by segment count match the Python grammar", () => {
    assert.deepStrictEqual(roleNames(1), ["base"]);
    assert.deepStrictEqual(roleNames(2), ["base", "person 1"]);
    assert.deepStrictEqual(roleNames(3), ["base", "common", "person 1"]);
    assert.deepStrictEqual(roleNames(5), ["base", "common", "person 1", "person 2", "person 3"]);
});

test("segments carry role, trimmed text and ranges", () => {
    const text = "a forest\nBREAK photo BREAK ohwx man <lora:x:1> --mask_dilate 8";
    const segments = multipassSegments(text);
    assert.deepStrictEqual(segments.map((s) => s.role), ["base", "common", "person 1"]);
    assert.deepStrictEqual(segments.map((s) => s.text), ["a forest", "photo", "ohwx man <lora:x:1> --mask_dilate 8"]);
    assert.strictEqual(text.slice(segments[2].start, segments[2].end).trim(), segments[2].text);
});

test("BREAK must be upper case and a whole word", () => {
    assert.strictEqual(multipassSegments("BREAKFAST break a_BREAK BREAK_b").length, 1);
    assert.strictEqual(multipassSegments("a BREAK b").length, 2);
});

test("repeated calls do not share regex state", () => {
    assert.strictEqual(multipassSegments("a BREAK b").length, 2);
    assert.strictEqual(multipassSegments("a BREAK b").length, 2);
});
