// web/js/curve_plot.js: ticks, point reduction, drawing calls (recorded by a fake 2D context).
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  PALETTE,
  curvePoints,
  curvesExtent,
  drawGrid,
  drawKeys,
  drawPolyline,
  formatTick,
  niceStep,
  niceTicks,
  normalizeCurves,
  plotCurves,
  plotRect,
  trackPoints,
} from "../js/curve_plot.js";
import { evaluateTrack, makeView } from "../js/keyframe_model.js";
import { callsNamed, fakeContext } from "./fakes.mjs";

test("niceStep picks 1, 2 or 5 times a power of ten", () => {
  assert.equal(niceStep(4, 5), 1);
  assert.equal(niceStep(60, 4), 20);
  assert.equal(niceStep(1, 4), 0.5);
  assert.equal(niceStep(0.3, 5), 0.1);
  assert.equal(niceStep(0, 5), 1);
});

test("niceTicks are clean multiples inside the range", () => {
  assert.deepEqual(niceTicks(0, 4, 4), [0, 1, 2, 3, 4]);
  assert.deepEqual(niceTicks(-30, 30, 4), [-20, 0, 20]);
  assert.deepEqual(niceTicks(0, 0.3, 3), [0, 0.1, 0.2, 0.3]);
  assert.deepEqual(niceTicks(-1.05, 1.05, 4), [-1, 0, 1]);
  assert.deepEqual(niceTicks(-1.05, 1.05, 5), [-1, -0.5, 0, 0.5, 1]);
  assert.equal(formatTick(0.30000000000000004, 0.1), "0.3");
  assert.equal(formatTick(20, 20), "20");
  assert.equal(formatTick(-0, 1), "0");
});

test("curvePoints keeps every frame of a short curve", () => {
  const view = makeView({ x: 0, y: 0, width: 100, height: 50 }, [0, 1], [0, 1]);
  const points = curvePoints([0, 0.5, 1, NaN, 0.25], 4, view);
  assert.deepEqual(points, [[0, 50], [25, 25], [50, 0], [100, 37.5]]);
});

test("curvePoints reduces long curves per pixel column but keeps peaks", () => {
  const view = makeView({ x: 0, y: 0, width: 50, height: 100 }, [0, 10], [-1, 1]);
  const values = Array.from({ length: 1000 }, (_, k) => (k === 537 ? 1 : k === 800 ? -1 : 0));
  const points = curvePoints(values, 100, view);
  assert.ok(points.length <= 50 * 4 + 4 && points.length < values.length);
  assert.ok(points.some(([, y]) => y === 0)); // the +1 spike
  assert.ok(points.some(([, y]) => y === 100)); // the -1 spike
  for (let i = 1; i < points.length; i++) assert.ok(points[i][0] >= points[i - 1][0]);
});

test("trackPoints follows the model's evaluator and keeps steps sharp", () => {
  const view = makeView({ x: 0, y: 0, width: 200, height: 100 }, [0, 2], [0, 1]);
  const track = { interp: "step", keys: [[0.5, 0], [1, 1]] };
  const points = trackPoints(track, view, 4);
  for (const [x, y] of points) {
    const expected = evaluateTrack(track, [view.xToTime(x)])[0];
    assert.ok(Math.abs(view.yToValue(y) - expected) < 1e-9);
  }
  const jump = points.findIndex(([x]) => Math.abs(x - view.timeToX(1)) < 1e-9);
  assert.ok(jump > 0 && points[jump - 1][1] === 100 && points[jump][1] === 0); // vertical edge at t=1
});

test("drawGrid draws time and value labels with units", () => {
  const ctx = fakeContext();
  const view = makeView({ x: 40, y: 10, width: 300, height: 100 }, [0, 4], [-30, 30]);
  drawGrid(ctx, view, { unit: "°" });
  const labels = callsNamed(ctx, "fillText").map((c) => c[1]);
  assert.ok(labels.includes("0s") && labels.includes("4s"));
  assert.ok(labels.includes("0°") && labels.includes("-20°") && labels.includes("20°"));
  assert.ok(callsNamed(ctx, "stroke").length >= 5);
  assert.deepEqual(callsNamed(ctx, "fillRect")[0], ["fillRect", 40, 10, 300, 100]);
});

test("drawPolyline and drawKeys issue the expected path calls", () => {
  const ctx = fakeContext();
  drawPolyline(ctx, [[0, 0], [10, 5], [20, 0]], { color: "#abc" });
  assert.deepEqual(callsNamed(ctx, "moveTo"), [["moveTo", 0, 0]]);
  assert.deepEqual(callsNamed(ctx, "lineTo"), [["lineTo", 10, 5], ["lineTo", 20, 0]]);
  assert.equal(ctx.strokeStyle, "#abc");
  const none = fakeContext();
  drawPolyline(none, [[1, 1]]);
  assert.equal(none.calls.length, 0);
  const keysCtx = fakeContext();
  const view = makeView({ x: 0, y: 0, width: 100, height: 100 }, [0, 1], [0, 1]);
  drawKeys(keysCtx, view, [[0.5, 0.5], [1, 1]], { selected: 1 });
  assert.equal(callsNamed(keysCtx, "fill").length, 2);
  assert.deepEqual(callsNamed(keysCtx, "moveTo")[0], ["moveTo", 50, 46]);
  assert.ok(keysCtx.calls.some((c) => c[0] === "set" && c[1] === "fillStyle" && c[2] === "#ffb74d"));
});

test("normalizeCurves keeps well-formed entries only", () => {
  const curves = normalizeCurves([
    { name: "pose.yaw", fps: 25, values: [0, 1, "2", null] },
    [{ name: "nested", fps: 30, values: [1] }],
    { name: "no fps", values: [1] },
    { name: "bad fps", fps: 0, values: [1] },
    { name: "no values", fps: 25 },
    null,
    7,
  ]);
  assert.deepEqual(curves.map((c) => c.name), ["pose.yaw", "nested"]);
  assert.deepEqual(curves[0].values.slice(0, 3), [0, 1, 2]);
  assert.ok(Number.isNaN(curves[0].values[3]));
  assert.deepEqual(normalizeCurves(undefined), []);
});

test("curvesExtent covers every curve and never collapses", () => {
  assert.deepEqual(curvesExtent([{ fps: 25, values: [0, 3, -2] }, { fps: 10, values: [1, 1, 1, 1, 1, 1] }]), {
    duration: 0.5,
    valueRange: [-2, 3],
  });
  assert.deepEqual(curvesExtent([{ fps: 25, values: [2] }]), { duration: 1, valueRange: [1, 3] });
  assert.deepEqual(curvesExtent([]).valueRange, [-1, 1]);
});

test("plotCurves draws one coloured polyline and legend entry per curve", () => {
  const ctx = fakeContext();
  const curves = [
    { name: "pose.yaw", fps: 25, values: Array.from({ length: 50 }, (_, k) => k / 5) },
    { name: "gaze.x", fps: 25, values: Array.from({ length: 50 }, (_, k) => Math.sin(k / 5)) },
  ];
  const view = plotCurves(ctx, 360, 160, curves);
  assert.deepEqual(view.rect, plotRect(360, 160));
  const legend = callsNamed(ctx, "fillText").map((c) => c[1]);
  assert.ok(legend.includes("pose.yaw") && legend.includes("gaze.x"));
  const strokes = ctx.calls.filter((c) => c[0] === "set" && c[1] === "strokeStyle").map((c) => c[2]);
  assert.ok(strokes.includes(PALETTE[0]) && strokes.includes(PALETTE[1]));
  assert.ok(callsNamed(ctx, "lineTo").length >= 98);
  const empty = fakeContext();
  assert.equal(plotCurves(empty, 200, 100, []), null);
  assert.ok(callsNamed(empty, "fillText")[0][1].includes("no curves"));
});
