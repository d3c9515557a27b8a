// Keyframe sets for DEMO motion factors: parse, validate, serialise, evaluate and edit.
//
// The JS twin of demo_core/motion/keyframes.py: the same JSON format, the same validation
// messages, the same normalised text and the same curve maths (web/tests/keyframe_vectors.json
// is checked by both test suites).  Pure module: no DOM, no ComfyUI, so `node --test` can load it.
//
// A set is the normalised full form itself, a plain object that is also valid input:
//   {version: 1, tracks: {"pose.yaw": {mode: "offset", interp: "smooth", keys: [[0, 0], [3, 15]]}}}
// with tracks sorted by name.  Edit functions never change their input; they return a new set.

import { JsonTextError, parseJsonText } from "./json_text.js";

export const FORMAT_VERSION = 1;
export const MODES = ["offset", "absolute", "gain"];
export const INTERPS = ["step", "linear", "smooth"];
export const DEFAULT_INTERP = "smooth";
/** Named axes of the factors that have them; every factor also has "gain" and "c<i>". */
export const SEMANTIC_AXES = {
  pose: ["yaw", "pitch", "roll", "tx", "ty", "scale"],
  gaze: ["x", "y"],
  blink: ["closure"],
};
const TRACK_NAME = /^([a-z][a-z0-9_]*)\.([A-Za-z0-9_]+)$/;
const COORDINATE_AXIS = /^c(0|[1-9][0-9]*)$/;

/** Error for an invalid keyframe set; `message` is the same text the Python side raises. */
export class KeyframeError extends Error {
  constructor(message) {
    super(message);
    this.name = "KeyframeError";
  }
}

/** Mode used when a track gives none: "gain" for `<factor>.gain`, else "offset". */
export function defaultMode(trackName) {
  return trackName.endsWith(".gain") ? "gain" : "offset";
}

// ---------------------------------------------------------------------------------------------
// Formatting shared with Python: numbers as Python's repr(float), JSON type names.

/** A number as Python's `repr(float(x))` writes it: "15.0", "0.1", "1e-05", "1e+16", "nan". */
export function formatNumber(x) {
  if (Number.isNaN(x)) return "nan";
  if (x === Infinity) return "inf";
  if (x === -Infinity) return "-inf";
  if (x === 0) return Object.is(x, -0) ? "-0.0" : "0.0";
  const [mantissa, expText] = x.toExponential().split("e"); // shortest round-trip digits
  const exp = Number(expText);
  const sign = mantissa.startsWith("-") ? "-" : "";
  const digits = mantissa.replace("-", "").replace(".", "");
  if (exp >= -4 && exp < 16) {
    if (exp < 0) return `${sign}0.${"0".repeat(-exp - 1)}${digits}`;
    const whole = digits.slice(0, exp + 1).padEnd(exp + 1, "0");
    return `${sign}${whole}.${digits.slice(exp + 1) || "0"}`;
  }
  const lead = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
  const expSign = exp < 0 ? "-" : "+";
  return `${sign}${lead}e${expSign}${String(Math.abs(exp)).padStart(2, "0")}`;
}

function isNumber(x) {
  return typeof x === "number";
}

function isPlainObject(x) {
  return x !== null && typeof x === "object" && !Array.isArray(x);
}

function typeName(x) {
  if (x === null) return "null";
  if (Array.isArray(x)) return "array";
  if (typeof x === "object") return "object";
  return typeof x; // "number", "string", "boolean", "undefined"
}

function describe(x) {
  if (x === null) return "null";
  if (typeof x === "boolean") return x ? "true" : "false";
  if (isNumber(x)) return formatNumber(x);
  if (typeof x === "string") return JSON.stringify(x);
  return typeName(x);
}

function quotedList(items) {
  return items.map((s) => JSON.stringify(s)).join(", ");
}

// ---------------------------------------------------------------------------------------------
// Parsing and validation

function loadJson(text, name) {
  if (text.trim() === "") return {};
  try {
    return parseJsonText(text);
  } catch (e) {
    if (!(e instanceof JsonTextError)) throw e;
    const msg = e.msg.replace(/ (starting )?at$/, ""); // "Unterminated string starting at" → "Unterminated string"
    throw new KeyframeError(`${name}: invalid JSON at line ${e.line} column ${e.column}: ${msg}`);
  }
}

function checkTrackName(track, known, name) {
  if (known !== null) {
    if (!known.includes(track)) {
      throw new KeyframeError(`${name}: unknown track ${JSON.stringify(track)} (valid tracks: ${quotedList(known)})`);
    }
    return;
  }
  const match = TRACK_NAME.exec(track);
  if (match === null) {
    throw new KeyframeError(
      `${name}: track ${JSON.stringify(track)}: name must be "<factor>.<axis>", for example "pose.yaw"`,
    );
  }
  const [, factor, axis] = match;
  const semantic = SEMANTIC_AXES[factor] ?? [];
  if (!semantic.includes(axis) && axis !== "gain" && !COORDINATE_AXIS.test(axis)) {
    const expected = quotedList([...semantic, "gain", "c<i>"]);
    throw new KeyframeError(
      `${name}: track ${JSON.stringify(track)}: unknown axis ${JSON.stringify(axis)} for factor ` +
        `${JSON.stringify(factor)} (expected one of ${expected})`,
    );
  }
}

function parseKeys(keys, where, range) {
  if (!Array.isArray(keys)) {
    throw new KeyframeError(`${where}: "keys" must be a list of [time, value] pairs, got ${typeName(keys)}`);
  }
  if (keys.length === 0) throw new KeyframeError(`${where}: "keys" is empty: give at least one [time, value] key`);
  const out = [];
  keys.forEach((key, k) => {
    const at = `${where} key ${k}`;
    if (!Array.isArray(key) || key.length !== 2) {
      const got = Array.isArray(key) ? `array of length ${key.length}` : describe(key);
      throw new KeyframeError(`${at}: expected a [time, value] pair, got ${got}`);
    }
    const [t, v] = key;
    if (!isNumber(t)) throw new KeyframeError(`${at}: time must be a number, got ${describe(t)}`);
    if (!isNumber(v)) throw new KeyframeError(`${at}: value must be a number, got ${describe(v)}`);
    if (!Number.isFinite(t)) throw new KeyframeError(`${at}: time ${formatNumber(t)} must be a finite number`);
    if (t < 0) throw new KeyframeError(`${at}: time ${formatNumber(t)} must be >= 0`);
    if (!Number.isFinite(v)) throw new KeyframeError(`${at}: value ${formatNumber(v)} must be a finite number`);
    const prev = out.length ? out[out.length - 1][0] : null;
    if (prev !== null && t === prev) {
      throw new KeyframeError(
        `${at}: time ${formatNumber(t)} repeats the time of key ${k - 1} (times must be strictly increasing)`,
      );
    }
    if (prev !== null && t < prev) {
      throw new KeyframeError(
        `${at}: time ${formatNumber(t)} is earlier than key ${k - 1} at ${formatNumber(prev)} ` +
          "(keys must be sorted by time)",
      );
    }
    if (range && !(range[0] <= v && v <= range[1])) {
      throw new KeyframeError(
        `${at}: value ${formatNumber(v)} is outside the allowed range ` +
          `[${formatNumber(range[0])}, ${formatNumber(range[1])}]`,
      );
    }
    out.push([t, v]);
  });
  return out;
}

function parseTrack(track, spec, name, range) {
  const where = `${name}: track ${JSON.stringify(track)}`;
  let mode = defaultMode(track);
  let interp = DEFAULT_INTERP;
  let keys;
  if (Array.isArray(spec)) {
    keys = spec;
  } else if (isPlainObject(spec)) {
    for (const field of Object.keys(spec)) {
      if (!["mode", "interp", "keys"].includes(field)) {
        throw new KeyframeError(`${where}: unknown field ${describe(field)} (expected "mode", "interp", "keys")`);
      }
    }
    if (!Object.hasOwn(spec, "keys")) throw new KeyframeError(`${where}: missing "keys"`);
    if (Object.hasOwn(spec, "mode")) mode = spec.mode;
    if (Object.hasOwn(spec, "interp")) interp = spec.interp;
    keys = spec.keys;
    if (!MODES.includes(mode)) {
      throw new KeyframeError(`${where}: unknown mode ${describe(mode)} (expected one of ${quotedList(MODES)})`);
    }
    if (!INTERPS.includes(interp)) {
      throw new KeyframeError(`${where}: unknown interp ${describe(interp)} (expected one of ${quotedList(INTERPS)})`);
    }
  } else {
    throw new KeyframeError(
      `${where}: expected a list of [time, value] keys or an object with "keys", got ${typeName(spec)}`,
    );
  }
  return { mode, interp, keys: parseKeys(keys, where, range) };
}

/**
 * Parse and validate a keyframe set (full or compact form).
 * @param {string|object} source JSON text (blank text is the empty set) or a decoded object / set.
 * @param {{knownTracks?: string[], ranges?: Object<string, number[]>, name?: string}} [options]
 *   knownTracks: the only names accepted (else the `<factor>.<axis>` grammar applies);
 *   ranges: `{track: [lo, hi]}` limits on key values; name: prefix of every message.
 * @returns {{version: number, tracks: Object<string, {mode: string, interp: string, keys: number[][]}>}}
 * @throws {KeyframeError} naming the offending track and key.
 */
export function parseKeyframes(source, { knownTracks = null, ranges = null, name = "keyframes" } = {}) {
  const data = typeof source === "string" ? loadJson(source, name) : source;
  if (!isPlainObject(data)) throw new KeyframeError(`${name}: expected a JSON object, got ${typeName(data)}`);
  let specs = data;
  if (Object.hasOwn(data, "tracks") || Object.hasOwn(data, "version")) {
    for (const field of Object.keys(data)) {
      if (field !== "version" && field !== "tracks") {
        throw new KeyframeError(`${name}: unknown field ${describe(field)} (expected "version", "tracks")`);
      }
    }
    const version = Object.hasOwn(data, "version") ? data.version : FORMAT_VERSION;
    if (version !== FORMAT_VERSION) {
      throw new KeyframeError(`${name}: "version" must be ${FORMAT_VERSION}, got ${describe(version)}`);
    }
    specs = Object.hasOwn(data, "tracks") ? data.tracks : {};
    if (!isPlainObject(specs)) {
      throw new KeyframeError(
        `${name}: "tracks" must be an object mapping track names to keys, got ${typeName(specs)}`,
      );
    }
  }
  const known = knownTracks === null || knownTracks === undefined ? null : [...knownTracks].map(String);
  const tracks = {};
  for (const track of Object.keys(specs)) {
    checkTrackName(track, known, name);
    const range = ranges && Object.hasOwn(ranges, track) && ranges[track] ? ranges[track].map(Number) : null;
    tracks[track] = parseTrack(track, specs[track], name, range);
  }
  return { version: FORMAT_VERSION, tracks: sortTracks(tracks) };
}

function sortTracks(tracks) {
  const out = {};
  for (const name of Object.keys(tracks).sort()) out[name] = tracks[name];
  return out;
}

/**
 * Try to parse; never throws.
 * @returns {{set: object|null, error: string|null}}
 */
export function tryParseKeyframes(source, options = {}) {
  try {
    return { set: parseKeyframes(source, options), error: null };
  } catch (e) {
    if (e instanceof KeyframeError) return { set: null, error: e.message };
    throw e;
  }
}

// ---------------------------------------------------------------------------------------------
// Serialisation

/** Normalised JSON text, byte-identical to Python's `to_json`: one track per line, sorted. */
export function serializeKeyframes(set) {
  const names = Object.keys(set.tracks).sort();
  if (names.length === 0) return `{"version": ${set.version ?? FORMAT_VERSION}, "tracks": {}}`;
  const lines = names.map((name) => {
    const { mode, interp, keys } = set.tracks[name];
    const keyText = keys.map(([t, v]) => `[${formatNumber(t)}, ${formatNumber(v)}]`).join(", ");
    return `  ${JSON.stringify(name)}: {"mode": "${mode}", "interp": "${interp}", "keys": [${keyText}]}`;
  });
  return `{"version": ${set.version ?? FORMAT_VERSION}, "tracks": {\n${lines.join(",\n")}\n}}`;
}

// ---------------------------------------------------------------------------------------------
// Evaluation (same operations, in the same order, as keyframes.py)

/** Slopes of the smooth curve at the keys: Fritsch–Butland interior slopes, 0 at both ends. */
export function trackTangents(times, values) {
  const n = times.length;
  const slopes = new Array(n).fill(0);
  for (let k = 1; k < n - 1; k++) {
    const h0 = times[k] - times[k - 1];
    const h1 = times[k + 1] - times[k];
    const d0 = (values[k] - values[k - 1]) / h0;
    const d1 = (values[k + 1] - values[k]) / h1;
    if ((d0 > 0 && d1 > 0) || (d0 < 0 && d1 < 0)) {
      const w0 = 2 * h1 + h0;
      const w1 = h1 + 2 * h0;
      slopes[k] = (w0 + w1) / (w0 / d0 + w1 / d1);
    }
  }
  return slopes;
}

function segmentIndex(times, t) {
  // largest i with times[i] <= t, clamped to [0, K - 2] (torch.searchsorted(right=True) - 1)
  let lo = 0;
  let hi = times.length; // answer of searchsorted is in [lo, hi]
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (times[mid] <= t) lo = mid + 1;
    else hi = mid;
  }
  return Math.min(Math.max(lo - 1, 0), times.length - 2);
}

/**
 * Curve values of one track at the given times (seconds).
 * @param {{interp: string, keys: number[][]}} track
 * @param {ArrayLike<number>} frameTimes
 * @returns {Float64Array}
 */
export function evaluateTrack(track, frameTimes) {
  const times = track.keys.map((k) => k[0]);
  const values = track.keys.map((k) => k[1]);
  const n = times.length;
  const out = new Float64Array(frameTimes.length);
  const slopes = track.interp === "smooth" ? trackTangents(times, values) : null;
  for (let j = 0; j < frameTimes.length; j++) {
    const t = frameTimes[j];
    if (n === 1 || t >= times[n - 1]) {
      out[j] = values[n - 1];
      continue;
    }
    if (t < times[0]) {
      out[j] = values[0];
      continue;
    }
    const i = segmentIndex(times, t);
    const t0 = times[i];
    const v0 = values[i];
    const v1 = values[i + 1];
    const h = times[i + 1] - t0;
    const u = Math.min(Math.max((t - t0) / h, 0), 1);
    let y;
    if (track.interp === "step") {
      y = v0;
    } else if (track.interp === "linear") {
      y = v0 + (v1 - v0) * u;
    } else {
      const u2 = u * u;
      const u3 = u2 * u;
      const h00 = 2 * u3 - 3 * u2 + 1;
      const h10 = u3 - 2 * u2 + u;
      const h01 = -2 * u3 + 3 * u2;
      const h11 = u3 - u2;
      y = h00 * v0 + h10 * h * slopes[i] + h01 * v1 + h11 * h * slopes[i + 1];
      y = Math.min(Math.max(y, Math.min(v0, v1)), Math.max(v0, v1));
    }
    out[j] = y;
  }
  return out;
}

/** Frame times k / fps for k = 0 .. numFrames - 1. */
export function frameTimes(numFrames, fps) {
  const out = new Float64Array(numFrames);
  for (let k = 0; k < numFrames; k++) out[k] = k / fps;
  return out;
}

/** Every track sampled at t_k = k / fps: `{name: Float64Array(numFrames)}`. */
export function evaluateKeyframes(set, numFrames, fps) {
  if (!Number.isInteger(numFrames) || numFrames < 0) {
    throw new KeyframeError(`num_frames: expected an integer >= 0, got ${describe(numFrames)}`);
  }
  if (!isNumber(fps) || !Number.isFinite(fps) || fps <= 0) {
    throw new KeyframeError(`fps: expected a positive finite number of frames per second, got ${describe(fps)}`);
  }
  const ts = frameTimes(numFrames, fps);
  const out = {};
  for (const name of Object.keys(set.tracks)) out[name] = evaluateTrack(set.tracks[name], ts);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Axis information for the editor

const AXIS_INFO = {
  "pose.yaw": { unit: "°", range: [-90, 90], view: [-30, 30] },
  "pose.pitch": { unit: "°", range: [-90, 90], view: [-30, 30] },
  "pose.roll": { unit: "°", range: [-90, 90], view: [-30, 30] },
  "pose.tx": { unit: "", range: [-1, 1], view: [-0.5, 0.5] },
  "pose.ty": { unit: "", range: [-1, 1], view: [-0.5, 0.5] },
  "pose.scale": { unit: "×", range: [0.25, 4], view: [0.5, 1.5] },
  "gaze.x": { unit: "", range: [-1, 1], view: [-1, 1] },
  "gaze.y": { unit: "", range: [-1, 1], view: [-1, 1] },
  "blink.closure": { unit: "", range: [0, 1], view: [0, 1] },
};
const GAIN_INFO = { unit: "×", range: [-4, 4], view: [0, 2] };
const COORDINATE_INFO = { unit: "", range: [-10, 10], view: [-2, 2] };

/** Tracks offered by the editor's selector, in display order. */
export const EDITOR_TRACKS = [
  "pose.yaw", "pose.pitch", "pose.roll", "pose.tx", "pose.ty", "pose.scale",
  "gaze.x", "gaze.y", "blink.closure",
  "lip.gain", "pose.gain", "gaze.gain", "blink.gain", "residual.gain",
];

/**
 * Unit, editing limits and default visible range of a track in a given mode.
 * Absolute values use the axis range; offsets its width either side of 0; gains -4..4.
 * @returns {{unit: string, range: number[], view: number[]}}
 */
export function axisInfo(trackName, mode = defaultMode(trackName)) {
  const axis = trackName.split(".")[1] ?? "";
  const base = AXIS_INFO[trackName] ?? (axis === "gain" ? GAIN_INFO : COORDINATE_INFO);
  if (mode === "gain") return { ...GAIN_INFO };
  if (mode === "absolute") return { unit: base.unit, range: [...base.range], view: [...base.view] };
  const span = base.range[1] - base.range[0];
  const viewHalf = (base.view[1] - base.view[0]) / 2;
  return { unit: base.unit, range: [-span, span], view: [-viewHalf, viewHalf] };
}

// ---------------------------------------------------------------------------------------------
// Edits: each returns a new set (and the index of the key it touched).

/** `value` limited to `[lo, hi]`; a missing range leaves it as it is. */
export function clampToRange(value, range) {
  if (!range) return value;
  return Math.min(Math.max(value, range[0]), range[1]);
}

/** `x` rounded to a multiple of `step` (printed without float noise: 0.1 * 3 gives 0.3). */
export function roundTo(x, step) {
  if (!(step > 0)) return x;
  const decimals = Math.max(0, Math.ceil(-Math.log10(step) - 1e-9));
  return Number((Math.round(x / step) * step).toFixed(Math.min(decimals, 12))) + 0;
}

function withTrack(set, name, track) {
  const tracks = { ...set.tracks };
  if (track === null) delete tracks[name];
  else tracks[name] = track;
  return { version: set.version ?? FORMAT_VERSION, tracks: sortTracks(tracks) };
}

/**
 * Add a key (creating the track with `mode`/`interp` or its defaults); a key closer than `minGap`
 * seconds to an existing one replaces that key's value instead.
 * @returns {{set: object, index: number}}
 */
export function addKey(set, name, time, value, { mode, interp, minGap = 1e-3 } = {}) {
  const old = set.tracks[name];
  const track = old
    ? { ...old, keys: old.keys.map((k) => [...k]) }
    : { mode: mode ?? defaultMode(name), interp: interp ?? DEFAULT_INTERP, keys: [] };
  const t = Math.max(0, time);
  const near = track.keys.findIndex(([kt]) => Math.abs(kt - t) < minGap);
  if (near >= 0) {
    track.keys[near] = [track.keys[near][0], value];
    return { set: withTrack(set, name, track), index: near };
  }
  let index = track.keys.findIndex(([kt]) => kt > t);
  if (index < 0) index = track.keys.length;
  track.keys.splice(index, 0, [t, value]);
  return { set: withTrack(set, name, track), index };
}

/**
 * Move key `index` to (time, value).  The time is kept `minGap` away from its neighbours (and
 * `>= 0`), so keys never change order; `snap` rounds it to a multiple of that many seconds when
 * the rounded time still lies strictly between the neighbours.
 * @returns {{set: object, index: number}}
 */
export function moveKey(set, name, index, time, value, { minGap = 1e-3, snap = 0 } = {}) {
  const old = set.tracks[name];
  if (!old || index < 0 || index >= old.keys.length) return { set, index: -1 };
  const keys = old.keys.map((k) => [...k]);
  const prev = index > 0 ? keys[index - 1][0] : -Infinity;
  const next = index < keys.length - 1 ? keys[index + 1][0] : Infinity;
  const lo = Math.max(prev + minGap, 0);
  const hi = next - minGap;
  let t = lo <= hi ? Math.min(Math.max(time, lo), hi) : keys[index][0]; // no room: keep the time
  if (snap > 0) {
    const snapped = roundTo(t, snap);
    if (snapped > prev && snapped < next && snapped >= 0) t = snapped;
  }
  keys[index] = [t, value];
  return { set: withTrack(set, name, { ...old, keys }), index };
}

/** Delete key `index`; deleting a track's last key removes the track. */
export function deleteKey(set, name, index) {
  const old = set.tracks[name];
  if (!old || index < 0 || index >= old.keys.length) return set;
  const keys = old.keys.filter((_, i) => i !== index).map((k) => [...k]);
  return withTrack(set, name, keys.length ? { ...old, keys } : null);
}

/** Change a track's mode and/or interp (a track that does not exist is left absent). */
export function setTrackOptions(set, name, { mode, interp } = {}) {
  const old = set.tracks[name];
  if (!old) return set;
  if (mode !== undefined && !MODES.includes(mode)) throw new KeyframeError(`unknown mode ${describe(mode)}`);
  if (interp !== undefined && !INTERPS.includes(interp)) throw new KeyframeError(`unknown interp ${describe(interp)}`);
  const keys = old.keys.map((k) => [...k]);
  return withTrack(set, name, { mode: mode ?? old.mode, interp: interp ?? old.interp, keys });
}

/** Remove a whole track. */
export function removeTrack(set, name) {
  return set.tracks[name] ? withTrack(set, name, null) : set;
}

// ---------------------------------------------------------------------------------------------
// Time/value <-> pixel mapping and hit testing

/**
 * A linear map between (time, value) and pixels inside `rect`; values grow upwards.
 * @param {{x: number, y: number, width: number, height: number}} rect plot area in pixels
 * @param {number[]} timeRange [t0, t1] seconds shown from left to right
 * @param {number[]} valueRange [v0, v1] shown from bottom to top
 */
export function makeView(rect, timeRange, valueRange) {
  const [t0, t1] = timeRange;
  const [v0, v1] = valueRange;
  const dt = t1 - t0 || 1;
  const dv = v1 - v0 || 1;
  return {
    rect: { ...rect },
    timeRange: [t0, t1],
    valueRange: [v0, v1],
    timeToX: (t) => rect.x + ((t - t0) / dt) * rect.width,
    xToTime: (x) => t0 + ((x - rect.x) / rect.width) * dt,
    valueToY: (v) => rect.y + rect.height - ((v - v0) / dv) * rect.height,
    yToValue: (y) => v0 + ((rect.y + rect.height - y) / rect.height) * dv,
    contains: (x, y) => x >= rect.x && x <= rect.x + rect.width && y >= rect.y && y <= rect.y + rect.height,
  };
}

/** Index of the key nearest to pixel (px, py) within `radius` pixels, or -1. */
export function hitTestKey(keys, view, px, py, radius = 6) {
  let best = -1;
  let bestDist = radius * radius;
  keys.forEach(([t, v], i) => {
    const dx = view.timeToX(t) - px;
    const dy = view.valueToY(v) - py;
    const dist = dx * dx + dy * dy;
    if (dist <= bestDist) {
      best = i;
      bestDist = dist;
    }
  });
  return best;
}

/**
 * Time and value ranges that show a track: the axis' default view widened to hold every key
 * (with a 10% margin) and a time span of at least `minDuration` seconds past the last key.
 */
export function fitView(track, trackName, { minDuration = 4, mode } = {}) {
  const info = axisInfo(trackName, mode ?? track?.mode ?? defaultMode(trackName));
  let [lo, hi] = info.view;
  let tMax = minDuration;
  for (const [t, v] of track?.keys ?? []) {
    lo = Math.min(lo, v);
    hi = Math.max(hi, v);
    tMax = Math.max(tMax, t + 1);
  }
  const pad = (hi - lo) * 0.1 || 1;
  if (lo < info.view[0]) lo -= pad;
  if (hi > info.view[1]) hi += pad;
  return { timeRange: [0, tMax], valueRange: [lo, hi] };
}
