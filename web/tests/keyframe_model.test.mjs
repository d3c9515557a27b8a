// web/js/keyframe_model.js: parse / validate / serialise, the shared vectors, edits, pixel mapping.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import {
  EDITOR_TRACKS,
  KeyframeError,
  addKey,
  axisInfo,
  clampToRange,
  deleteKey,
  evaluateKeyframes,
  evaluateTrack,
  fitView,
  formatNumber,
  hitTestKey,
  makeView,
  moveKey,
  parseKeyframes,
  removeTrack,
  roundTo,
  serializeKeyframes,
  setTrackOptions,
  trackTangents,
  tryParseKeyframes,
} from "../js/keyframe_model.js";

const vectors = JSON.parse(readFileSync(new URL("./keyframe_vectors.json", import.meta.url), "utf8"));

function jsOptions(options = {}) {
  const { known_tracks: knownTracks = null, ranges = null, name = "keyframes" } = options;
  return { knownTracks, ranges, name };
}

function closeTo(actual, expected, rel = 1e-12) {
  return Math.abs(actual - expected) <= rel * Math.max(1, Math.abs(expected));
}

const BRIEF = `{"version": 1,
 "tracks": {
   "pose.yaw":      {"mode": "offset",   "interp": "smooth", "keys": [[0.0, 0.0], [3.0, 15.0]]},
   "gaze.x":        {"mode": "absolute", "interp": "linear", "keys": [[1.0, 0.0], [2.0, 0.8]]},
   "blink.closure": {"mode": "absolute", "interp": "step",   "keys": [[1.2, 0.0], [1.3, 1.0], [1.45, 0.0]]},
   "lip.gain":      {"mode": "gain",     "interp": "linear", "keys": [[0.0, 1.0], [4.0, 0.5]]}
 }}`;

// ---------------------------------------------------------------------------------------------
// shared vectors (the same file is checked by tests/motion/test_keyframes.py)

test("vectors: evaluation agrees with Python per frame", () => {
  assert.ok(vectors.evaluate.length >= 5);
  for (const c of vectors.evaluate) {
    const set = parseKeyframes(c.input);
    const curves = evaluateKeyframes(set, c.num_frames, c.fps);
    assert.deepEqual(Object.keys(curves).sort(), Object.keys(c.expected).sort(), c.name);
    for (const [track, expected] of Object.entries(c.expected)) {
      assert.equal(curves[track].length, expected.length, `${c.name} ${track}`);
      expected.forEach((e, k) => {
        assert.ok(closeTo(curves[track][k], e), `${c.name} ${track} frame ${k}: ${curves[track][k]} != ${e}`);
      });
    }
  }
});

test("vectors: normalised text is byte-identical to Python's to_json", () => {
  for (const c of vectors.serialize) assert.equal(serializeKeyframes(parseKeyframes(c.input)), c.text);
});

test("vectors: every error message is identical to Python's", () => {
  assert.ok(vectors.errors.length >= 30);
  for (const c of vectors.errors) {
    assert.throws(() => parseKeyframes(c.input, jsOptions(c.options)), (e) => {
      assert.ok(e instanceof KeyframeError);
      assert.equal(e.message, c.message);
      return true;
    });
  }
});

test("vectors: numbers print as Python's repr(float)", () => {
  for (const text of vectors.numbers) assert.equal(formatNumber(Number(text)), text);
  assert.equal(formatNumber(-1), "-1.0");
  assert.equal(formatNumber(NaN), "nan");
  assert.equal(formatNumber(-Infinity), "-inf");
  assert.equal(formatNumber(-0), "-0.0");
});

// ---------------------------------------------------------------------------------------------
// parsing

test("full form parses into tracks sorted by name", () => {
  const set = parseKeyframes(BRIEF);
  assert.deepEqual(Object.keys(set.tracks), ["blink.closure", "gaze.x", "lip.gain", "pose.yaw"]);
  const blink = { mode: "absolute", interp: "step", keys: [[1.2, 0], [1.3, 1], [1.45, 0]] };
  assert.deepEqual(set.tracks["blink.closure"], blink);
});

test("compact form gets default mode and interp", () => {
  const set = parseKeyframes('{"pose.yaw": [[0, 0], [3, 15]], "lip.gain": [[0, 1]]}');
  assert.deepEqual(set.tracks["pose.yaw"], { mode: "offset", interp: "smooth", keys: [[0, 0], [3, 15]] });
  assert.equal(set.tracks["lip.gain"].mode, "gain");
  const partial = parseKeyframes({ tracks: { "pose.yaw": { keys: [[0, 0], [3, 15]] } } });
  assert.deepEqual(partial, parseKeyframes('{"pose.yaw": [[0, 0], [3, 15]]}'));
});

test("blank text and empty objects are the empty set", () => {
  for (const source of ["", "  \n", "{}", '{"version": 1}', { tracks: {} }]) {
    assert.deepEqual(parseKeyframes(source), { version: 1, tracks: {} });
  }
  assert.equal(serializeKeyframes(parseKeyframes("")), '{"version": 1, "tracks": {}}');
});

test("the brief's error example reads exactly as specified", () => {
  assert.throws(() => parseKeyframes('{"pose.yaw": [[0, 0], [1, 1], [-1.0, 2]]}'), {
    message: 'keyframes: track "pose.yaw" key 2: time -1.0 must be >= 0',
  });
});

test("decoded objects are validated too (NaN from code, not JSON)", () => {
  assert.throws(() => parseKeyframes({ "gaze.x": [[0, NaN]] }), {
    message: 'keyframes: track "gaze.x" key 0: value nan must be a finite number',
  });
  assert.throws(() => parseKeyframes(null), { message: "keyframes: expected a JSON object, got null" });
  assert.throws(() => parseKeyframes([]), { message: "keyframes: expected a JSON object, got array" });
});

test("tryParseKeyframes never throws for bad input", () => {
  assert.deepEqual(tryParseKeyframes("{"), {
    set: null,
    error: "keyframes: invalid JSON at line 1 column 2: Expecting property name enclosed in double quotes",
  });
  assert.equal(tryParseKeyframes('{"pose.yaw": [[0, 1]]}').error, null);
});

test("round trip: parse(serialise(set)) equals set, serialising is idempotent", () => {
  const set = parseKeyframes(BRIEF);
  const text = serializeKeyframes(set);
  assert.deepEqual(parseKeyframes(text), set);
  assert.equal(serializeKeyframes(parseKeyframes(text)), text);
  assert.deepEqual(parseKeyframes(set), set); // a set is valid input
});

test("parse does not modify its input", () => {
  const data = { "pose.yaw": { keys: [[3, 15], [4, 0]] } };
  const before = JSON.stringify(data);
  const set = parseKeyframes(data);
  set.tracks["pose.yaw"].keys[0][1] = 99;
  assert.equal(JSON.stringify(data), before);
});

// ---------------------------------------------------------------------------------------------
// evaluation maths

test("linear is exact at midpoints, step holds, hold outside the keys", () => {
  const linear = { interp: "linear", keys: [[0, 0], [2, 10], [4, -3]] };
  assert.deepEqual([...evaluateTrack(linear, [1, 3, -1, 9])], [5, 3.5, 0, -3]);
  const step = { interp: "step", keys: [[1.2, 0], [1.3, 1], [1.45, 0]] };
  assert.deepEqual([...evaluateTrack(step, [0, 1.2, 1.29, 1.3, 1.449, 1.45, 5])], [0, 0, 0, 1, 1, 0, 0]);
});

test("smooth passes through its keys and never overshoots", () => {
  const keys = [[0, 0], [0.5, 1], [1.5, 4], [2, 4.5], [3.5, 2], [4, 2.5], [5, 9]];
  const track = { interp: "smooth", keys };
  assert.deepEqual([...evaluateTrack(track, keys.map((k) => k[0]))], keys.map((k) => k[1]));
  const slopes = trackTangents(keys.map((k) => k[0]), keys.map((k) => k[1]));
  assert.equal(slopes[0], 0);
  assert.equal(slopes[3], 0); // local maximum stays flat
  for (let i = 0; i + 1 < keys.length; i++) {
    const [t0, v0] = keys[i];
    const [t1, v1] = keys[i + 1];
    const ts = Array.from({ length: 51 }, (_, j) => t0 + ((t1 - t0) * j) / 50);
    let previous = null;
    for (const y of evaluateTrack(track, ts)) {
      assert.ok(y >= Math.min(v0, v1) && y <= Math.max(v0, v1), `segment ${i}: ${y}`);
      if (previous !== null) assert.ok((v1 >= v0 ? y - previous : previous - y) >= -1e-12, `segment ${i} not monotone`);
      previous = y;
    }
  }
});

test("15° yaw at 3 s is exactly 15 at frame 75 at 25 fps", () => {
  const curves = evaluateKeyframes(parseKeyframes('{"pose.yaw": [[0, 0], [3, 15]]}'), 100, 25);
  assert.equal(curves["pose.yaw"][75], 15);
  assert.equal(Math.max(...curves["pose.yaw"]), 15);
});

test("evaluateKeyframes checks its arguments", () => {
  const set = parseKeyframes('{"pose.yaw": [[0, 1]]}');
  assert.throws(() => evaluateKeyframes(set, -1, 25), /num_frames/);
  assert.throws(() => evaluateKeyframes(set, 2.5, 25), /num_frames/);
  assert.throws(() => evaluateKeyframes(set, 10, 0), /fps/);
  assert.deepEqual([...evaluateKeyframes(set, 3, 25)["pose.yaw"]], [1, 1, 1]);
});

// ---------------------------------------------------------------------------------------------
// edits

test("addKey inserts in time order, creates tracks with defaults, replaces near keys", () => {
  const empty = parseKeyframes("");
  let { set, index } = addKey(empty, "pose.yaw", 2, 10);
  assert.equal(index, 0);
  assert.deepEqual(set.tracks["pose.yaw"], { mode: "offset", interp: "smooth", keys: [[2, 10]] });
  ({ set, index } = addKey(set, "pose.yaw", 1, 5));
  assert.equal(index, 0);
  ({ set, index } = addKey(set, "pose.yaw", 3, 0));
  assert.equal(index, 2);
  assert.deepEqual(set.tracks["pose.yaw"].keys, [[1, 5], [2, 10], [3, 0]]);
  ({ set, index } = addKey(set, "pose.yaw", 2.0004, -1));
  assert.equal(index, 1);
  assert.deepEqual(set.tracks["pose.yaw"].keys[1], [2, -1]);
  ({ set } = addKey(set, "lip.gain", 0, 1, { interp: "linear" }));
  assert.deepEqual(set.tracks["lip.gain"], { mode: "gain", interp: "linear", keys: [[0, 1]] });
  assert.deepEqual(Object.keys(set.tracks), ["lip.gain", "pose.yaw"]);
  assert.deepEqual(empty, { version: 1, tracks: {} }); // input untouched
});

test("moveKey keeps key order and snaps times", () => {
  const set = parseKeyframes('{"pose.yaw": [[1, 0], [2, 5], [3, 0]]}');
  let moved = moveKey(set, "pose.yaw", 1, 7, 9, { minGap: 0.01 }).set;
  assert.deepEqual(moved.tracks["pose.yaw"].keys[1], [2.99, 9]);
  moved = moveKey(set, "pose.yaw", 1, -4, 9, { minGap: 0.01 }).set;
  assert.deepEqual(moved.tracks["pose.yaw"].keys[1], [1.01, 9]);
  moved = moveKey(set, "pose.yaw", 0, -4, 9).set;
  assert.deepEqual(moved.tracks["pose.yaw"].keys[0], [0, 9]);
  moved = moveKey(set, "pose.yaw", 1, 1.23456, 1, { minGap: 0.01, snap: 0.01 }).set;
  assert.deepEqual(moved.tracks["pose.yaw"].keys[1], [1.23, 1]);
  assert.equal(moveKey(set, "pose.yaw", 5, 0, 0).index, -1);
  assert.deepEqual(set.tracks["pose.yaw"].keys, [[1, 0], [2, 5], [3, 0]]);
  // the result always parses: keys stay strictly increasing
  assert.doesNotThrow(() => parseKeyframes(serializeKeyframes(moved)));
});

test("moveKey leaves the time alone when the neighbours leave no room", () => {
  const set = parseKeyframes('{"pose.yaw": [[1, 0], [1.004, 5], [1.008, 0]]}');
  const moved = moveKey(set, "pose.yaw", 1, 3, 2, { minGap: 0.01 }).set;
  assert.deepEqual(moved.tracks["pose.yaw"].keys[1], [1.004, 2]);
});

test("deleteKey, removeTrack and setTrackOptions", () => {
  const set = parseKeyframes('{"pose.yaw": [[1, 0], [2, 5]], "gaze.x": [[0, 0.5]]}');
  assert.deepEqual(deleteKey(set, "pose.yaw", 0).tracks["pose.yaw"].keys, [[2, 5]]);
  assert.equal(deleteKey(set, "gaze.x", 0).tracks["gaze.x"], undefined); // last key removes the track
  assert.equal(deleteKey(set, "pose.yaw", 7), set);
  assert.deepEqual(Object.keys(removeTrack(set, "pose.yaw").tracks), ["gaze.x"]);
  const changed = setTrackOptions(set, "pose.yaw", { mode: "absolute", interp: "step" });
  assert.equal(changed.tracks["pose.yaw"].mode, "absolute");
  assert.equal(changed.tracks["pose.yaw"].interp, "step");
  assert.throws(() => setTrackOptions(set, "pose.yaw", { mode: "add" }), KeyframeError);
  assert.equal(set.tracks["pose.yaw"].mode, "offset");
});

test("clampToRange, roundTo and axisInfo", () => {
  assert.equal(clampToRange(1.5, [-1, 1]), 1);
  assert.equal(clampToRange(-3, [-1, 1]), -1);
  assert.equal(clampToRange(7, null), 7);
  assert.equal(roundTo(0.1 * 3, 0.1), 0.3);
  assert.equal(roundTo(1.23456, 0.01), 1.23);
  assert.equal(Object.is(roundTo(-0.001, 0.01), -0), false);
  assert.deepEqual(axisInfo("gaze.x", "absolute").range, [-1, 1]);
  assert.deepEqual(axisInfo("gaze.x", "offset").range, [-2, 2]);
  assert.deepEqual(axisInfo("blink.closure", "absolute").range, [0, 1]);
  assert.deepEqual(axisInfo("lip.gain").view, [0, 2]);
  assert.equal(axisInfo("pose.yaw").unit, "°");
  assert.deepEqual(axisInfo("lip.c3", "absolute").range, [-10, 10]);
  assert.ok(EDITOR_TRACKS.includes("blink.closure") && EDITOR_TRACKS.includes("lip.gain"));
});

// ---------------------------------------------------------------------------------------------
// pixel mapping and hit testing

test("makeView maps time/value to pixels and back", () => {
  const view = makeView({ x: 40, y: 20, width: 400, height: 100 }, [0, 4], [-30, 30]);
  assert.equal(view.timeToX(0), 40);
  assert.equal(view.timeToX(4), 440);
  assert.equal(view.valueToY(30), 20); // values grow upwards
  assert.equal(view.valueToY(-30), 120);
  assert.equal(view.valueToY(0), 70);
  for (const [t, v] of [[1.25, 7.5], [3.9, -29]]) {
    assert.ok(Math.abs(view.xToTime(view.timeToX(t)) - t) < 1e-12);
    assert.ok(Math.abs(view.yToValue(view.valueToY(v)) - v) < 1e-12);
  }
  assert.ok(view.contains(40, 20) && !view.contains(39, 50) && !view.contains(100, 121));
});

test("hitTestKey picks the nearest key within the radius", () => {
  const view = makeView({ x: 0, y: 0, width: 400, height: 100 }, [0, 4], [0, 10]);
  const keys = [[1, 5], [1.1, 5], [3, 0]];
  assert.equal(hitTestKey(keys, view, 100, 50, 6), 0);
  assert.equal(hitTestKey(keys, view, 109, 50, 6), 1);
  assert.equal(hitTestKey(keys, view, 300, 97, 6), 2);
  assert.equal(hitTestKey(keys, view, 200, 50, 6), -1);
});

test("fitView widens the default view to hold every key", () => {
  assert.deepEqual(fitView(null, "pose.yaw"), { timeRange: [0, 4], valueRange: [-30, 30] });
  const { timeRange, valueRange } = fitView({ mode: "offset", keys: [[6, 45], [7, -10]] }, "pose.yaw");
  assert.deepEqual(timeRange, [0, 8]);
  assert.ok(valueRange[0] === -30 && valueRange[1] > 45);
});
