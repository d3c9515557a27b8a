// ComfyUI registration of the motion-curve preview.
//
// After a run, DemoPreviewMotion, DemoSampleMotion and DemoEditFactors may return
// {"ui": {"demo_curves": [{"name": "pose.yaw", "fps": 25, "values": [...]}, ...]}}; the front-end
// hands that `ui` object to `onExecuted`, and this extension draws the curves in a small canvas
// widget on the node.  Drawing is done by curve_plot.js, which imports nothing from ComfyUI.

import { app } from "../../../scripts/app.js";
import { normalizeCurves, plotCurves } from "./curve_plot.js";

const NODE_NAMES = new Set(["DemoPreviewMotion", "DemoSampleMotion", "DemoEditFactors"]);
const PREVIEW_WIDGET = "motion_curves";
const MIN_HEIGHT = 160;

function addPreview(node) {
  if (typeof node.addDOMWidget !== "function") return null;
  const canvas = document.createElement("canvas");
  Object.assign(canvas.style, { width: "100%", height: "100%", minHeight: "100px", display: "block" });
  const preview = { canvas, curves: [] };
  preview.redraw = () => {
    const width = canvas.clientWidth;
    const height = canvas.clientHeight;
    if (!width || !height) return;
    const ratio = window.devicePixelRatio || 1;
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    plotCurves(ctx, width, height, preview.curves);
  };
  const widget = node.addDOMWidget(PREVIEW_WIDGET, "demo_motion_curves", canvas, {
    serialize: false,
    hideOnZoom: false,
    getValue: () => "",
    setValue: () => {},
    getMinHeight: () => MIN_HEIGHT,
  });
  widget.serialize = false;
  if (typeof ResizeObserver === "function") new ResizeObserver(preview.redraw).observe(canvas);
  const [width, height] = node.computeSize?.() ?? node.size ?? [0, 0];
  node.setSize?.([Math.max(node.size?.[0] ?? 0, width, 320), Math.max(node.size?.[1] ?? 0, height)]);
  return preview;
}

function showCurves(node, raw) {
  const curves = normalizeCurves(raw);
  if (!curves.length) return;
  node.demoMotionPreview ??= addPreview(node);
  if (!node.demoMotionPreview) return;
  node.demoMotionPreview.curves = curves;
  node.demoMotionPreview.redraw();
  node.setDirtyCanvas?.(true, true);
}

app.registerExtension({
  name: "comfyui-demo.MotionPreview",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!NODE_NAMES.has(nodeData?.name)) return;
    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (message) {
      const result = onExecuted?.apply(this, arguments);
      try {
        showCurves(this, message?.demo_curves);
      } catch (error) {
        console.error("[comfyui-demo] motion preview failed:", error);
      }
      return result;
    };
  },
});
