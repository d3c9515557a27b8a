// web/js/keyframe_widget.js: the editor's state machine driven with canvas-pixel input.
import assert from "node:assert/strict";
import { test } from "node:test";

import { parseKeyframes } from "../js/keyframe_model.js";
import { HINT, KeyframeEditor, valueSnap, wrapText } from "../js/keyframe_widget.js";
import { callsNamed, fakeContext } from "./fakes.mjs";

const WIDTH = 400;
const HEIGHT = 240;

function makeEditor(text = "") {
  const written = [];
  const editor = new KeyframeEditor({ onChange: (t) => written.push(t) });
  editor.loadText(text);
  editor.draw(fakeContext(), WIDTH, HEIGHT); // lays out the view
  return { editor, written };
}

function pixel(editor, t, v) {
  return [editor.view.timeToX(t), editor.view.valueToY(v)];
}

test("click adds a snapped key and writes normalised JSON", () => {
  const { editor, written } = makeEditor();
  const [x, y] = pixel(editor, 1.234, 10.04);
  assert.equal(editor.pointerDown(x, y), true);
  assert.equal(written.length, 1);
  const set = parseKeyframes(written[0]);
  assert.deepEqual(set.tracks["pose.yaw"], { mode: "offset", interp: "smooth", keys: [[1.23, 10]] });
  assert.equal(editor.selected, 0);
  assert.equal(editor.text, written[0]);
  assert.equal(editor.loadText(written[0]), false); // own text is not re-read
});

test("drag moves the key, frozen view, order kept", () => {
  const { editor, written } = makeEditor('{"pose.yaw": [[1, 0], [2, 10], [3, 0]]}');
  const [x, y] = pixel(editor, 2, 10);
  assert.equal(editor.pointerDown(x, y), true);
  assert.equal(written.length, 0); // grabbing a key is not an edit
  const view = editor.drag.view;
  editor.pointerMove(...pixel(editor, 2.5, 20));
  editor.draw(fakeContext(), WIDTH, HEIGHT);
  assert.equal(editor.currentView(), view);
  editor.pointerMove(view.timeToX(9), view.valueToY(-5)); // past the next key: clamped before it
  editor.pointerUp();
  const keys = parseKeyframes(written.at(-1)).tracks["pose.yaw"].keys;
  assert.deepEqual(keys[1], [2.99, -5]);
  assert.equal(keys.length, 3);
  assert.equal(editor.drag, null);
});

test("values are clamped to the axis range of the mode", () => {
  const { editor, written } = makeEditor('{"gaze.x": {"mode": "absolute", "keys": [[0, 0.5]]}}');
  editor.selectTrack("gaze.x");
  editor.draw(fakeContext(), WIDTH, HEIGHT);
  editor.pointerDown(...pixel(editor, 0, 0.5));
  editor.pointerMove(editor.view.timeToX(0), editor.view.rect.y - 500); // far above the plot
  assert.deepEqual(parseKeyframes(written.at(-1)).tracks["gaze.x"].keys, [[0, 1]]);
});

test("right-click and double-click delete keys; Delete removes the selection", () => {
  const { editor, written } = makeEditor('{"pose.yaw": [[1, 0], [2, 10], [3, 0]]}');
  assert.equal(editor.pointerDown(...pixel(editor, 2, 10), { button: 2 }), true);
  assert.deepEqual(parseKeyframes(written.at(-1)).tracks["pose.yaw"].keys, [[1, 0], [3, 0]]);
  assert.equal(editor.pointerDown(...pixel(editor, 2, 25), { button: 2 }), false); // nothing there
  assert.equal(editor.doubleClick(...pixel(editor, 1, 0)), true);
  assert.deepEqual(parseKeyframes(written.at(-1)).tracks["pose.yaw"].keys, [[3, 0]]);
  editor.pointerDown(...pixel(editor, 3, 0));
  editor.pointerUp();
  editor.deleteSelected();
  assert.equal(written.at(-1), '{"version": 1, "tracks": {}}');
});

test("hand-written text is re-read; invalid text shows the message and blocks edits", () => {
  const { editor, written } = makeEditor('{"pose.yaw": [[0, 0], [3, 15]]}');
  assert.equal(editor.loadText('{"gaze.x": [[0, 0.25]]}'), true);
  assert.ok(editor.trackNames().includes("gaze.x"));
  assert.equal(editor.track, null); // still on pose.yaw, which the new text removed
  assert.equal(editor.loadText('{"gaze.x": [[0, 0.25]'), true);
  assert.match(editor.error, /^keyframes: invalid JSON at line 1 column 22: Expecting .,. delimiter$/);
  assert.equal(editor.pointerDown(100, 100), false);
  editor.setMode("absolute");
  editor.clearTrack();
  assert.equal(written.length, 0); // the text in the STRING widget is never overwritten
  const ctx = fakeContext();
  editor.draw(ctx, WIDTH, HEIGHT);
  assert.ok(callsNamed(ctx, "fillText").some((c) => c[1].includes("invalid JSON")));
  editor.loadText('{"gaze.x": [[0, 0.25]]}');
  assert.equal(editor.error, null);
});

test("mode and interp apply to the track, or wait for its first key", () => {
  const { editor, written } = makeEditor('{"pose.yaw": [[0, 0], [3, 15]]}');
  editor.setInterp("linear");
  assert.equal(parseKeyframes(written.at(-1)).tracks["pose.yaw"].interp, "linear");
  editor.selectTrack("blink.closure");
  editor.setMode("absolute");
  editor.setInterp("step");
  assert.equal(written.length, 1); // no track yet: nothing to write
  assert.deepEqual(editor.trackOptions(), { mode: "absolute", interp: "step" });
  editor.draw(fakeContext(), WIDTH, HEIGHT);
  editor.pointerDown(...pixel(editor, 1.2, 1));
  const blink = parseKeyframes(written.at(-1)).tracks["blink.closure"];
  assert.deepEqual(blink, { mode: "absolute", interp: "step", keys: [[1.2, 1]] });
  editor.clearTrack();
  assert.equal(parseKeyframes(written.at(-1)).tracks["blink.closure"], undefined);
});

test("custom tracks join the selector list", () => {
  const { editor } = makeEditor();
  editor.selectTrack("lip.c3");
  assert.ok(editor.trackNames().includes("lip.c3"));
  assert.equal(editor.trackOptions().mode, "offset");
});

test("hover, status line and drawing", () => {
  const { editor } = makeEditor('{"pose.yaw": [[1, 0], [2, 10]]}');
  assert.equal(editor.status(), HINT);
  assert.equal(editor.pointerMove(...pixel(editor, 2, 10)), true);
  assert.equal(editor.hover, 1);
  assert.equal(editor.status(), "key 1: t = 2.00 s, value = 10°");
  const ctx = fakeContext();
  editor.draw(ctx, WIDTH, HEIGHT);
  const texts = callsNamed(ctx, "fillText").map((c) => c[1]);
  assert.ok(texts.includes("pose.yaw · offset · smooth"));
  assert.ok(callsNamed(ctx, "lineTo").length > 100); // curve sampled across the width
  assert.equal(callsNamed(ctx, "fill").length, 2); // two key markers
});

test("valueSnap and wrapText helpers", () => {
  assert.equal(valueSnap(60), 0.1);
  assert.equal(valueSnap(2), 0.01);
  assert.equal(valueSnap(0), 0.01);
  assert.deepEqual(wrapText("aaa bbb ccc", 7), ["aaa bbb", "ccc"]);
  assert.deepEqual(wrapText("abcdefghij", 4), ["abcd", "efgh", "ij"]);
});
