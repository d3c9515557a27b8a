// ComfyUI registration of the keyframe editor on DemoEditFactors.
//
// Adds a DOM widget (track / mode / interp selectors and a canvas timeline) under the node's
// `keyframes` STRING widget.  The STRING widget stays the single source of truth: every edit in
// the canvas writes normalised JSON into it (so saved workflows hold plain text and run without
// this extension), and text typed or loaded into it is read back.  The editing logic lives in
// keyframe_widget.js and keyframe_model.js, which import nothing from ComfyUI.

import { app } from "../../../scripts/app.js";
import { INTERPS, MODES, tryParseKeyframes } from "./keyframe_model.js";
import { KeyframeEditor } from "./keyframe_widget.js";

const NODE_NAME = "DemoEditFactors";
const TEXT_WIDGET = "keyframes";
const EDITOR_WIDGET = "keyframe_editor";
const MIN_HEIGHT = 240;
const CUSTOM_TRACK = "__custom__";

function element(tag, style = {}, props = {}) {
  const el = document.createElement(tag);
  Object.assign(el.style, style);
  Object.assign(el, props);
  return el;
}

function fillSelect(select, values, current, labels = {}) {
  select.replaceChildren(
    ...values.map((v) => {
      const option = element("option", {}, { value: v, textContent: labels[v] ?? v });
      option.selected = v === current;
      return option;
    }),
  );
  select.value = current;
}

/** Pointer position in the canvas' own CSS pixels (the widget may be scaled by the graph zoom). */
function canvasPoint(canvas, event) {
  const rect = canvas.getBoundingClientRect();
  const sx = rect.width ? canvas.clientWidth / rect.width : 1;
  const sy = rect.height ? canvas.clientHeight / rect.height : 1;
  return [(event.clientX - rect.left) * sx, (event.clientY - rect.top) * sy];
}

function attachEditor(node) {
  if (typeof node.addDOMWidget !== "function") {
    console.warn("[comfyui-demo] this ComfyUI front-end has no addDOMWidget: keyframe editor disabled");
    return null;
  }
  const textWidget = node.widgets?.find((w) => w.name === TEXT_WIDGET) ?? null;
  const readText = () => (textWidget ? String(textWidget.value ?? "") : "");

  const root = element("div", { display: "flex", flexDirection: "column", gap: "4px", width: "100%", height: "100%" });
  const bar = element("div", { display: "flex", gap: "4px", alignItems: "center", fontSize: "11px" });
  const selectStyle = { flex: "1 1 0", minWidth: "0", fontSize: "11px" };
  const trackSelect = element("select", selectStyle, { title: "track (<factor>.<axis>)" });
  const modeSelect = element("select", selectStyle, {
    title: "offset: added · absolute: replaces · gain: multiplies",
  });
  const interpSelect = element("select", selectStyle, { title: "step · linear · smooth (no overshoot)" });
  const clearButton = element("button", { fontSize: "11px" }, {
    textContent: "clear",
    title: "delete every key of this track",
  });
  bar.append(trackSelect, modeSelect, interpSelect, clearButton);
  const canvasStyle = { flex: "1 1 auto", width: "100%", minHeight: "120px", outline: "none", cursor: "crosshair" };
  const canvas = element("canvas", canvasStyle, { tabIndex: 0 });
  root.append(bar, canvas);

  let writing = false;
  const editor = new KeyframeEditor({
    onChange(text) {
      if (!textWidget) return; // no STRING widget: edits stay local
      writing = true;
      try {
        textWidget.value = text;
        if (textWidget.element && textWidget.element.value !== text) textWidget.element.value = text;
      } finally {
        writing = false;
      }
      node.setDirtyCanvas?.(true, true);
    },
  });

  const redraw = () => {
    const width = canvas.clientWidth;
    const height = canvas.clientHeight;
    if (!width || !height) return;
    const ratio = window.devicePixelRatio || 1;
    if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
      canvas.width = Math.round(width * ratio);
      canvas.height = Math.round(height * ratio);
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    editor.draw(ctx, width, height);
  };

  const refreshBar = () => {
    fillSelect(trackSelect, [...editor.trackNames(), CUSTOM_TRACK], editor.trackName, { [CUSTOM_TRACK]: "other…" });
    const { mode, interp } = editor.trackOptions();
    fillSelect(modeSelect, MODES, mode);
    fillSelect(interpSelect, INTERPS, interp);
    const disabled = editor.error !== null || !textWidget;
    for (const el of [modeSelect, interpSelect, clearButton]) el.disabled = disabled;
  };

  const sync = () => {
    if (writing) return;
    if (editor.loadText(readText())) {
      refreshBar();
      redraw();
    }
  };

  trackSelect.addEventListener("change", () => {
    let name = trackSelect.value;
    if (name === CUSTOM_TRACK) {
      name = (window.prompt("Track name, <factor>.<axis> (e.g. lip.c3, residual.gain):", "") ?? "").trim();
      const { error } = tryParseKeyframes({ [name]: [[0, 0]] });
      if (!name || error) {
        if (name) window.alert(error);
        refreshBar();
        return;
      }
    }
    editor.selectTrack(name);
    refreshBar();
    redraw();
  });
  modeSelect.addEventListener("change", () => {
    editor.setMode(modeSelect.value);
    redraw();
  });
  interpSelect.addEventListener("change", () => {
    editor.setInterp(interpSelect.value);
    redraw();
  });
  clearButton.addEventListener("click", () => {
    editor.clearTrack();
    refreshBar();
    redraw();
  });

  canvas.addEventListener("pointerdown", (event) => {
    canvas.focus();
    const [x, y] = canvasPoint(canvas, event);
    if (editor.pointerDown(x, y, { button: event.button })) {
      event.preventDefault();
      event.stopPropagation();
      if (editor.drag) canvas.setPointerCapture?.(event.pointerId);
      refreshBar();
    }
    redraw();
  });
  canvas.addEventListener("pointermove", (event) => {
    const [x, y] = canvasPoint(canvas, event);
    if (editor.pointerMove(x, y)) redraw();
  });
  const release = (event) => {
    if (editor.pointerUp()) {
      canvas.releasePointerCapture?.(event.pointerId);
      redraw();
    }
  };
  canvas.addEventListener("pointerup", release);
  canvas.addEventListener("pointercancel", release);
  canvas.addEventListener("pointerleave", () => {
    if (!editor.drag && editor.hover >= 0) {
      editor.hover = -1;
      redraw();
    }
  });
  canvas.addEventListener("dblclick", (event) => {
    const [x, y] = canvasPoint(canvas, event);
    if (editor.doubleClick(x, y)) {
      event.preventDefault();
      event.stopPropagation();
      refreshBar();
      redraw();
    }
  });
  canvas.addEventListener("contextmenu", (event) => {
    event.preventDefault(); // right button deletes keys (handled on pointerdown)
    event.stopPropagation();
  });
  canvas.addEventListener("keydown", (event) => {
    if (event.key === "Delete" || event.key === "Backspace") {
      editor.deleteSelected();
      event.preventDefault();
      event.stopPropagation();
      refreshBar();
      redraw();
    }
  });
  if (typeof ResizeObserver === "function") new ResizeObserver(redraw).observe(canvas);

  if (textWidget) {
    const callback = textWidget.callback;
    textWidget.callback = function () {
      const result = callback?.apply(this, arguments);
      sync();
      return result;
    };
    textWidget.element?.addEventListener?.("input", sync);
  } else {
    console.warn(`[comfyui-demo] ${NODE_NAME} has no "${TEXT_WIDGET}" widget: the keyframe editor cannot store edits`);
  }

  const widget = node.addDOMWidget(EDITOR_WIDGET, "demo_keyframe_editor", root, {
    serialize: false,
    hideOnZoom: false,
    getValue: () => editor.text ?? "",
    setValue: () => {},
    getMinHeight: () => MIN_HEIGHT,
  });
  widget.serialize = false; // not part of widgets_values: workflows keep only the STRING

  editor.loadText(readText());
  refreshBar();
  const [width, height] = node.computeSize?.() ?? node.size ?? [0, 0];
  node.setSize?.([Math.max(node.size?.[0] ?? 0, width, 380), Math.max(node.size?.[1] ?? 0, height)]);
  return { editor, sync, redraw };
}

app.registerExtension({
  name: "comfyui-demo.KeyframeEditor",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData?.name !== NODE_NAME) return;

    const onNodeCreated = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function () {
      const result = onNodeCreated?.apply(this, arguments);
      try {
        this.demoKeyframeEditor = attachEditor(this);
      } catch (error) {
        console.error("[comfyui-demo] keyframe editor could not be added:", error);
      }
      return result;
    };

    // A loaded workflow sets the STRING without callbacks; the draw hook also catches pastes,
    // undo and any other change made while the editor was not looking (a string compare a frame).
    const onConfigure = nodeType.prototype.onConfigure;
    nodeType.prototype.onConfigure = function () {
      const result = onConfigure?.apply(this, arguments);
      this.demoKeyframeEditor?.sync();
      return result;
    };
    const onDrawForeground = nodeType.prototype.onDrawForeground;
    nodeType.prototype.onDrawForeground = function () {
      const result = onDrawForeground?.apply(this, arguments);
      this.demoKeyframeEditor?.sync();
      return result;
    };
  },
});
