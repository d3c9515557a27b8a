// The two ComfyUI registration modules, loaded with "scripts/app.js" replaced by a stub (a module
// resolve hook) and a minimal fake DOM: early return for other nodes, edits written into the
// STRING widget, text re-read on change, robustness without the STRING widget, curve preview.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { register } from "node:module";
import { test } from "node:test";

import { parseKeyframes } from "../js/keyframe_model.js";
import { callsNamed, fakeNodeType, installFakeDom } from "./fakes.mjs";

const HOOKS = `
export async function resolve(specifier, context, next) {
  if (specifier.endsWith("/scripts/app.js")) {
    return { url: "data:text/javascript,export const app = globalThis.__fakeComfyApp;", shortCircuit: true };
  }
  return next(specifier, context);
}`;
register(`data:text/javascript,${encodeURIComponent(HOOKS)}`, import.meta.url);

installFakeDom();
globalThis.__fakeComfyApp = {
  extensions: [],
  registerExtension(extension) {
    this.extensions.push(extension);
  },
};
const app = globalThis.__fakeComfyApp;
await import("../js/keyframe_editor.js");
await import("../js/motion_preview.js");

function extension(name) {
  const found = app.extensions.find((e) => e.name === name);
  assert.ok(found, `${name} registered`);
  return found;
}

async function editFactorsNode(widgets) {
  const Node = fakeNodeType();
  await extension("comfyui-demo.KeyframeEditor").beforeRegisterNodeDef(Node, { name: "DemoEditFactors" });
  const node = new Node();
  node.widgets.push(...widgets);
  node.onNodeCreated();
  return node;
}

test("pure modules import nothing from ComfyUI; registration modules guard on the node name", () => {
  for (const file of ["keyframe_model.js", "keyframe_widget.js", "curve_plot.js", "json_text.js"]) {
    const source = readFileSync(new URL(`../js/${file}`, import.meta.url), "utf8");
    assert.doesNotMatch(source, /scripts\/app\.js|scripts\/api\.js/, file);
  }
  for (const file of ["keyframe_editor.js", "motion_preview.js"]) {
    const source = readFileSync(new URL(`../js/${file}`, import.meta.url), "utf8");
    assert.match(source, /from "\.\.\/\.\.\/\.\.\/scripts\/app\.js"/, file); // web/js → /scripts/app.js
  }
});

test("the editor leaves other node types alone", async () => {
  const Node = fakeNodeType();
  const before = { ...Node.prototype };
  await extension("comfyui-demo.KeyframeEditor").beforeRegisterNodeDef(Node, { name: "KSampler" });
  assert.deepEqual({ ...Node.prototype }, before);
  assert.equal(Node.prototype.onNodeCreated, undefined);
});

test("canvas edits write normalised JSON into the keyframes STRING widget", async () => {
  const text = { name: "keyframes", value: "", callback: null };
  const node = await editFactorsNode([{ name: "strength", value: 1 }, text]);
  const domWidget = node.widgets.find((w) => w.name === "keyframe_editor");
  assert.ok(domWidget, "DOM widget added");
  assert.equal(domWidget.serialize, false);
  assert.equal(domWidget.options.serialize, false);
  assert.ok(domWidget.options.getMinHeight() >= 200);
  assert.ok(node.size[1] >= 400);

  const canvas = domWidget.element.find("canvas");
  const { editor } = node.demoKeyframeEditor;
  editor.draw(canvas.getContext(), canvas.clientWidth, canvas.clientHeight);
  const down = canvas.dispatch("pointerdown", { clientX: editor.view.timeToX(1), clientY: editor.view.valueToY(5) });
  assert.equal(down.defaultPrevented, true);
  canvas.dispatch("pointerup");
  const set = parseKeyframes(text.value);
  assert.deepEqual(set.tracks["pose.yaw"].keys, [[1, 5]]);
  assert.ok(node.dirty > 0);
  assert.ok(callsNamed(canvas.getContext(), "fillText").length > 0, "canvas redrawn");

  // typed by hand: the STRING widget's callback makes the editor re-read it
  text.value = '{"gaze.x": {"mode": "absolute", "keys": [[0, 0.5]]}}';
  text.callback(text.value);
  assert.ok(editor.trackNames().includes("gaze.x"));
  const trackSelect = domWidget.element.findAll("select")[0];
  assert.ok(trackSelect.children.some((o) => o.value === "gaze.x"));

  // invalid text: message shown, text kept, canvas edits ignored
  text.value = '{"gaze.x": [[0, 0.5]';
  text.callback(text.value);
  assert.match(editor.error, /invalid JSON/);
  canvas.dispatch("pointerdown", { clientX: 200, clientY: 100 });
  assert.equal(text.value, '{"gaze.x": [[0, 0.5]');

  // set without a callback (workflow load): picked up on the next draw
  text.value = '{"pose.roll": [[0, 3]]}';
  node.onDrawForeground();
  assert.equal(editor.error, null);
  assert.ok(editor.trackNames().includes("pose.roll"));
});

test("track, mode and interp selectors drive the editor", async () => {
  const text = { name: "keyframes", value: '{"pose.yaw": [[0, 0], [3, 15]]}' };
  const node = await editFactorsNode([text]);
  const [trackSelect, modeSelect, interpSelect] = node.widgets.at(-1).element.findAll("select");
  interpSelect.value = "step";
  interpSelect.dispatch("change");
  assert.equal(parseKeyframes(text.value).tracks["pose.yaw"].interp, "step");
  modeSelect.value = "absolute";
  modeSelect.dispatch("change");
  assert.equal(parseKeyframes(text.value).tracks["pose.yaw"].mode, "absolute");
  trackSelect.value = "blink.closure";
  trackSelect.dispatch("change");
  assert.equal(node.demoKeyframeEditor.editor.trackName, "blink.closure");
  assert.equal(modeSelect.value, "offset");
});

test("a node without the keyframes widget still gets a working editor", async () => {
  const node = await editFactorsNode([{ name: "strength", value: 1 }]);
  const domWidget = node.widgets.find((w) => w.name === "keyframe_editor");
  assert.ok(domWidget);
  const canvas = domWidget.element.find("canvas");
  assert.doesNotThrow(() => canvas.dispatch("pointerdown", { clientX: 150, clientY: 100 }));
  assert.doesNotThrow(() => node.onDrawForeground());
  assert.equal(node.widgets[0].value, 1);
});

test("a front-end without addDOMWidget is tolerated", async () => {
  const Node = fakeNodeType();
  delete Node.prototype.addDOMWidget;
  await extension("comfyui-demo.KeyframeEditor").beforeRegisterNodeDef(Node, { name: "DemoEditFactors" });
  const node = new Node();
  const warn = console.warn;
  console.warn = () => {};
  try {
    assert.doesNotThrow(() => node.onNodeCreated());
  } finally {
    console.warn = warn;
  }
  assert.equal(node.demoKeyframeEditor, null);
});

test("motion preview draws demo_curves after a run, only for its nodes", async () => {
  const preview = extension("comfyui-demo.MotionPreview");
  for (const name of ["DemoPreviewMotion", "DemoSampleMotion", "DemoEditFactors"]) {
    const Node = fakeNodeType();
    let original = 0;
    Node.prototype.onExecuted = () => {
      original += 1;
    };
    await preview.beforeRegisterNodeDef(Node, { name });
    const node = new Node();
    node.onExecuted({ images: [] });
    assert.equal(node.widgets.length, 0, "no curves: no widget");
    const demo_curves = [
      { name: "pose.yaw", fps: 25, values: [0, 1, 2, 3] },
      { name: "gaze.x", fps: 25, values: [0, -1, 0, 1] },
    ];
    node.onExecuted({ demo_curves });
    assert.equal(original, 2, "the node's own onExecuted still runs");
    const widget = node.widgets.find((w) => w.name === "motion_curves");
    assert.ok(widget && widget.serialize === false);
    const ctx = widget.element.getContext();
    const labels = callsNamed(ctx, "fillText").map((c) => c[1]);
    assert.ok(labels.includes("pose.yaw") && labels.includes("gaze.x"));
    node.onExecuted({ demo_curves: [{ name: "blink.closure", fps: 25, values: [0, 1] }] });
    assert.equal(node.widgets.filter((w) => w.name === "motion_curves").length, 1, "widget reused");
  }
  const Other = fakeNodeType();
  await preview.beforeRegisterNodeDef(Other, { name: "SaveImage" });
  assert.equal(Other.prototype.onExecuted, undefined);
});
