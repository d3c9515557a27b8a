// Drawing helpers for time curves on a 2D canvas: nice ticks, grid, polylines, key markers and a
// multi-curve plot for the motion preview.  Pure module: every function takes the context (or
// plain numbers) as arguments, so `node --test` can check it with a recording fake context.

import { evaluateTrack, makeView } from "./keyframe_model.js";

export const PALETTE = ["#4fc3f7", "#ffb74d", "#81c784", "#e57373", "#ba68c8", "#fff176", "#4db6ac", "#f06292"];
export const THEME = {
  background: "#1b1b1b",
  grid: "#2e2e2e",
  zero: "#555555",
  text: "#9e9e9e",
  curve: "#4fc3f7",
  key: "#ffffff",
  selected: "#ffb74d",
  error: "#ef5350",
  font: "10px sans-serif",
};

/** A 1, 2 or 5 × 10^k step that cuts `span` into at most `maxTicks` intervals. */
export function niceStep(span, maxTicks = 5) {
  if (!(span > 0) || !Number.isFinite(span)) return 1;
  const raw = span / Math.max(1, maxTicks);
  const power = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 5, 10]) {
    if (m * power >= raw) return m * power;
  }
  return 10 * power;
}

/** Decimal places that print multiples of `step` exactly. */
export function stepDecimals(step) {
  return Math.max(0, Math.min(12, Math.ceil(-Math.log10(step) - 1e-9)));
}

/** Multiples of a nice step inside [lo, hi], free of float noise (0.30000000000000004 → 0.3). */
export function niceTicks(lo, hi, maxTicks = 5) {
  const step = niceStep(hi - lo, maxTicks);
  const decimals = stepDecimals(step);
  const ticks = [];
  const first = Math.ceil(lo / step - 1e-9);
  const last = Math.floor(hi / step + 1e-9);
  for (let k = first; k <= last && ticks.length < 1000; k++) ticks.push(Number((k * step).toFixed(decimals)) + 0);
  return ticks;
}

/** A tick label: `x` with as many decimals as the step needs. */
export function formatTick(x, step) {
  return (Number(x.toFixed(stepDecimals(step))) + 0).toFixed(stepDecimals(step));
}

/**
 * Points of a sampled curve (one value per frame at `fps`) in pixels.  Long curves are reduced to
 * the first, minimum, maximum and last value of each pixel column, so peaks survive.
 * @returns {number[][]} [[x, y], ...]
 */
export function curvePoints(values, fps, view) {
  const n = values.length;
  const columns = Math.max(1, Math.ceil(view.rect.width));
  const points = [];
  const push = (k) => points.push([view.timeToX(k / fps), view.valueToY(values[k])]);
  if (n <= 2 * columns) {
    for (let k = 0; k < n; k++) if (Number.isFinite(values[k])) push(k);
    return points;
  }
  let column = null;
  let bucket = [];
  const flush = () => {
    if (!bucket.length) return;
    let lo = bucket[0];
    let hi = bucket[0];
    for (const k of bucket) {
      if (values[k] < values[lo]) lo = k;
      if (values[k] > values[hi]) hi = k;
    }
    const picks = [...new Set([bucket[0], lo, hi, bucket[bucket.length - 1]])].sort((a, b) => a - b);
    picks.forEach(push);
    bucket = [];
  };
  for (let k = 0; k < n; k++) {
    if (!Number.isFinite(values[k])) continue;
    const c = Math.floor(view.timeToX(k / fps));
    if (c !== column) {
      flush();
      column = c;
    }
    bucket.push(k);
  }
  flush();
  return points;
}

/**
 * Points of a keyframe track's curve across the view, drawn with the model's evaluator: one
 * sample every `stepPx` pixels plus each key time and a point just before it (steps stay sharp).
 * @returns {number[][]} [[x, y], ...]
 */
export function trackPoints(track, view, stepPx = 2) {
  const [t0, t1] = view.timeRange;
  const columns = Math.max(1, Math.ceil(view.rect.width / stepPx));
  const times = [];
  for (let c = 0; c <= columns; c++) times.push(t0 + ((t1 - t0) * c) / columns);
  const eps = (t1 - t0) * 1e-6;
  for (const [t] of track.keys) {
    if (t > t0 && t < t1) times.push(t - eps, t);
  }
  times.sort((a, b) => a - b);
  const values = evaluateTrack(track, times);
  return times.map((t, i) => [view.timeToX(t), view.valueToY(values[i])]);
}

/** Fill the background and draw the grid, the zero line and the tick labels of a view. */
export function drawGrid(ctx, view, { unit = "", theme = THEME, maxTimeTicks = 6, maxValueTicks = 4 } = {}) {
  const { x, y, width, height } = view.rect;
  const [t0, t1] = view.timeRange;
  const [v0, v1] = view.valueRange;
  ctx.fillStyle = theme.background;
  ctx.fillRect(x, y, width, height);
  ctx.lineWidth = 1;
  ctx.font = theme.font;
  ctx.fillStyle = theme.text;
  const timeStep = niceStep(t1 - t0, maxTimeTicks);
  ctx.strokeStyle = theme.grid;
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  for (const t of niceTicks(t0, t1, maxTimeTicks)) {
    const px = Math.round(view.timeToX(t)) + 0.5;
    ctx.beginPath();
    ctx.moveTo(px, y);
    ctx.lineTo(px, y + height);
    ctx.stroke();
    ctx.fillText(`${formatTick(t, timeStep)}s`, px, y + height + 2);
  }
  const valueStep = niceStep(v1 - v0, maxValueTicks);
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  for (const v of niceTicks(v0, v1, maxValueTicks)) {
    const py = Math.round(view.valueToY(v)) + 0.5;
    ctx.strokeStyle = v === 0 ? theme.zero : theme.grid;
    ctx.beginPath();
    ctx.moveTo(x, py);
    ctx.lineTo(x + width, py);
    ctx.stroke();
    ctx.fillText(`${formatTick(v, valueStep)}${unit}`, x - 3, py);
  }
}

/** Stroke a polyline through `points` ([[x, y], ...]); fewer than two points draw nothing. */
export function drawPolyline(ctx, points, { color = THEME.curve, width = 1.5 } = {}) {
  if (points.length < 2) return;
  ctx.strokeStyle = color;
  ctx.lineWidth = width;
  ctx.beginPath();
  ctx.moveTo(points[0][0], points[0][1]);
  for (let i = 1; i < points.length; i++) ctx.lineTo(points[i][0], points[i][1]);
  ctx.stroke();
}

/** Draw key markers (diamonds); the `selected` one is larger and highlighted. */
export function drawKeys(ctx, view, keys, { selected = -1, hover = -1, radius = 4, theme = THEME } = {}) {
  keys.forEach(([t, v], i) => {
    const px = view.timeToX(t);
    const py = view.valueToY(v);
    const r = i === selected || i === hover ? radius + 1.5 : radius;
    ctx.fillStyle = i === selected ? theme.selected : theme.key;
    ctx.beginPath();
    ctx.moveTo(px, py - r);
    ctx.lineTo(px + r, py);
    ctx.lineTo(px, py + r);
    ctx.lineTo(px - r, py);
    ctx.closePath();
    ctx.fill();
  });
}

/**
 * Clean up a `demo_curves` payload from a node's `ui` output: keep entries with a name, a positive
 * fps and a list of numbers (nested lists from ComfyUI's batching are flattened one level).
 * @returns {{name: string, fps: number, values: number[]}[]}
 */
export function normalizeCurves(raw) {
  if (!Array.isArray(raw)) return [];
  const out = [];
  for (const entry of raw.flat()) {
    if (entry === null || typeof entry !== "object") continue;
    const fps = Number(entry.fps);
    if (!Array.isArray(entry.values) || !(fps > 0) || !Number.isFinite(fps)) continue;
    const values = entry.values.map((v) => (v === null ? NaN : Number(v)));
    out.push({ name: String(entry.name ?? `curve ${out.length}`), fps, values });
  }
  return out;
}

/** Duration (s) and finite value range covered by curves; an empty range becomes ±1 around it. */
export function curvesExtent(curves) {
  let duration = 0;
  let lo = Infinity;
  let hi = -Infinity;
  for (const { fps, values } of curves) {
    duration = Math.max(duration, (values.length - 1) / fps);
    for (const v of values) {
      if (!Number.isFinite(v)) continue;
      lo = Math.min(lo, v);
      hi = Math.max(hi, v);
    }
  }
  if (!(lo <= hi)) [lo, hi] = [-1, 1];
  if (hi - lo < 1e-9) [lo, hi] = [lo - 1, hi + 1];
  return { duration: duration > 0 ? duration : 1, valueRange: [lo, hi] };
}

/** The plot area inside a canvas of `width` × `height` pixels, leaving room for labels. */
export function plotRect(width, height, { left = 40, right = 8, top = 18, bottom = 16 } = {}) {
  return { x: left, y: top, width: Math.max(1, width - left - right), height: Math.max(1, height - top - bottom) };
}

/**
 * Draw the motion preview: grid, one polyline per curve (palette colours) and a legend.
 * @returns {object|null} the view used (null when there is nothing to draw)
 */
export function plotCurves(ctx, width, height, curves, { theme = THEME } = {}) {
  ctx.fillStyle = theme.background;
  ctx.fillRect(0, 0, width, height);
  if (!curves.length) {
    ctx.fillStyle = theme.text;
    ctx.font = theme.font;
    ctx.textAlign = "left";
    ctx.textBaseline = "top";
    ctx.fillText("no curves yet: run the workflow", 6, 6);
    return null;
  }
  const { duration, valueRange } = curvesExtent(curves);
  const pad = (valueRange[1] - valueRange[0]) * 0.05;
  const view = makeView(plotRect(width, height), [0, duration], [valueRange[0] - pad, valueRange[1] + pad]);
  drawGrid(ctx, view, { theme });
  ctx.textAlign = "left";
  ctx.textBaseline = "top";
  let legendX = view.rect.x;
  curves.forEach((curve, i) => {
    const color = PALETTE[i % PALETTE.length];
    drawPolyline(ctx, curvePoints(curve.values, curve.fps, view), { color });
    ctx.fillStyle = color;
    ctx.fillText(curve.name, legendX, 3);
    legendX += (ctx.measureText ? ctx.measureText(curve.name).width : curve.name.length * 6) + 12;
  });
  return view;
}
