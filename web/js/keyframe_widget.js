// The keyframe editor's state and interaction, independent of the DOM and of ComfyUI.
//
// `KeyframeEditor` holds the last valid keyframe set, the selected track and key, and turns
// pointer input (canvas pixels) into model edits.  Every edit serialises the set and hands the
// normalised JSON to `onChange`; text typed by hand comes back through `loadText`.  While that
// text is invalid the editor shows the message and ignores edits, so the text is never clobbered.
// keyframe_editor.js wires it to a canvas inside a ComfyUI DOM widget.

import {
  DEFAULT_INTERP,
  EDITOR_TRACKS,
  addKey,
  axisInfo,
  clampToRange,
  defaultMode,
  deleteKey,
  fitView,
  hitTestKey,
  makeView,
  moveKey,
  removeTrack,
  roundTo,
  serializeKeyframes,
  setTrackOptions,
  tryParseKeyframes,
} from "./keyframe_model.js";
import { THEME, drawGrid, drawKeys, drawPolyline, plotRect, trackPoints } from "./curve_plot.js";

export const TIME_SNAP = 0.01; // seconds: keys land on 10 ms steps
export const HIT_RADIUS = 7; // pixels
export const HINT = "click: add key · drag: move · right-click / double-click: delete";

/** Rounding step for values: two digits below the magnitude of the visible span. */
export function valueSnap(span) {
  if (!(span > 0)) return 0.01;
  return 10 ** (Math.floor(Math.log10(span)) - 2);
}

export class KeyframeEditor {
  /**
   * @param {{onChange?: (text: string) => void, trackName?: string, minDuration?: number}} [options]
   *   onChange receives the normalised JSON after every edit; minDuration is the shortest
   *   timeline shown, in seconds.
   */
  constructor({ onChange = () => {}, trackName = EDITOR_TRACKS[0], minDuration = 4 } = {}) {
    this.onChange = onChange;
    this.minDuration = minDuration;
    this.set = { version: 1, tracks: {} };
    this.text = null; // last text seen or written
    this.error = null;
    this.trackName = trackName;
    this.extraTracks = [];
    this.pending = { mode: null, interp: null }; // options for a track that has no keys yet
    this.selected = -1;
    this.hover = -1;
    this.drag = null; // {index, view} while a key is dragged
    this.view = null;
    this.size = { width: 0, height: 0 };
  }

  /** Read text from the STRING widget; returns true when it differed from the last seen text. */
  loadText(text) {
    const source = text ?? "";
    if (source === this.text) return false;
    this.text = source;
    const { set, error } = tryParseKeyframes(source);
    this.error = error;
    if (set) {
      this.set = set;
      const track = set.tracks[this.trackName];
      if (!track || this.selected >= track.keys.length) this.selected = -1;
      if (!this.drag || !track || this.drag.index >= track.keys.length) this.drag = null;
    }
    return true;
  }

  /** Names for the track selector: the editor's list, then tracks in the set, then added ones. */
  trackNames() {
    const names = [...EDITOR_TRACKS];
    for (const name of [...Object.keys(this.set.tracks), ...this.extraTracks, this.trackName]) {
      if (!names.includes(name)) names.push(name);
    }
    return names;
  }

  get track() {
    return this.set.tracks[this.trackName] ?? null;
  }

  /** Mode and interp of the current track (or those its first key will get). */
  trackOptions() {
    const track = this.track;
    if (track) return { mode: track.mode, interp: track.interp };
    return { mode: this.pending.mode ?? defaultMode(this.trackName), interp: this.pending.interp ?? DEFAULT_INTERP };
  }

  selectTrack(name) {
    if (name === this.trackName) return;
    if (!EDITOR_TRACKS.includes(name) && !this.extraTracks.includes(name)) this.extraTracks.push(name);
    this.trackName = name;
    this.selected = -1;
    this.hover = -1;
    this.drag = null;
    this.pending = { mode: null, interp: null };
  }

  setMode(mode) {
    this.setOptions({ mode });
  }

  setInterp(interp) {
    this.setOptions({ interp });
  }

  setOptions(options) {
    if (this.error !== null) return;
    if (this.track) this.commit(setTrackOptions(this.set, this.trackName, options));
    else this.pending = { ...this.pending, ...options };
  }

  clearTrack() {
    if (this.error !== null || !this.track) return;
    this.selected = -1;
    this.commit(removeTrack(this.set, this.trackName));
  }

  deleteSelected() {
    if (this.error !== null || this.selected < 0) return;
    const index = this.selected;
    this.selected = -1;
    this.commit(deleteKey(this.set, this.trackName, index));
  }

  commit(set) {
    this.set = set;
    this.text = serializeKeyframes(set);
    this.onChange(this.text);
  }

  /** The view for the current track and canvas size (frozen while a key is dragged). */
  layout(width, height) {
    this.size = { width, height };
    if (this.drag) return this.drag.view;
    const { mode } = this.trackOptions();
    const { timeRange, valueRange } = fitView(this.track, this.trackName, { minDuration: this.minDuration, mode });
    this.view = makeView(plotRect(width, height, { top: 20, bottom: 28 }), timeRange, valueRange);
    return this.view;
  }

  currentView() {
    return this.drag?.view ?? this.view ?? this.layout(this.size.width || 300, this.size.height || 200);
  }

  snapPoint(view, x, y) {
    const { mode } = this.trackOptions();
    const info = axisInfo(this.trackName, mode);
    const span = view.valueRange[1] - view.valueRange[0];
    const time = Math.max(0, roundTo(view.xToTime(x), TIME_SNAP));
    const value = clampToRange(roundTo(view.yToValue(y), valueSnap(span)), info.range);
    return { time, value };
  }

  /**
   * Pointer pressed at canvas pixel (x, y).  Button 0 selects and starts dragging the key under
   * the pointer, or adds a key there; button 2 deletes the key under the pointer.
   * @returns {boolean} whether the event was used (the caller then stops its propagation)
   */
  pointerDown(x, y, { button = 0 } = {}) {
    if (this.error !== null) return false;
    const view = this.currentView();
    const hit = this.track ? hitTestKey(this.track.keys, view, x, y, HIT_RADIUS) : -1;
    if (button === 2) {
      if (hit < 0) return false;
      this.selected = hit;
      this.deleteSelected();
      return true;
    }
    if (button !== 0) return false;
    if (hit >= 0) {
      this.selected = hit;
      this.drag = { index: hit, view };
      return true;
    }
    if (!view.contains(x, y)) return false;
    const { time, value } = this.snapPoint(view, x, y);
    const { mode, interp } = this.trackOptions();
    const { set, index } = addKey(this.set, this.trackName, time, value, { mode, interp, minGap: TIME_SNAP });
    this.selected = index;
    this.drag = { index, view };
    this.commit(set);
    return true;
  }

  /** Pointer moved: drags the held key, or updates the hover highlight. */
  pointerMove(x, y) {
    if (this.drag && this.error === null && this.track) {
      const { time, value } = this.snapPoint(this.drag.view, x, y);
      const [oldTime, oldValue] = this.track.keys[this.drag.index];
      const { set } = moveKey(this.set, this.trackName, this.drag.index, time, value, {
        minGap: TIME_SNAP,
        snap: TIME_SNAP,
      });
      const [newTime, newValue] = set.tracks[this.trackName].keys[this.drag.index];
      if (newTime !== oldTime || newValue !== oldValue) this.commit(set);
      return true;
    }
    const view = this.currentView();
    const hover = this.track ? hitTestKey(this.track.keys, view, x, y, HIT_RADIUS) : -1;
    const changed = hover !== this.hover;
    this.hover = hover;
    return changed;
  }

  pointerUp() {
    const wasDragging = this.drag !== null;
    this.drag = null;
    return wasDragging;
  }

  /** Double click: delete the key under the pointer. */
  doubleClick(x, y) {
    if (this.error !== null || !this.track) return false;
    const hit = hitTestKey(this.track.keys, this.currentView(), x, y, HIT_RADIUS);
    if (hit < 0) return false;
    this.selected = hit;
    this.deleteSelected();
    return true;
  }

  /** Status line: the held/hovered key's time and value, else the usage hint. */
  status() {
    const track = this.track;
    const index = this.drag?.index ?? (this.hover >= 0 ? this.hover : this.selected);
    if (!track || index < 0 || index >= track.keys.length) return HINT;
    const [t, v] = track.keys[index];
    const { unit } = axisInfo(this.trackName, track.mode);
    return `key ${index}: t = ${t.toFixed(2)} s, value = ${Number(v.toPrecision(6))}${unit}`;
  }

  /** Draw the whole editor into `ctx` (a canvas of `width` × `height` CSS pixels). */
  draw(ctx, width, height, theme = THEME) {
    const view = this.layout(width, height);
    ctx.fillStyle = theme.background;
    ctx.fillRect(0, 0, width, height);
    const { mode, interp } = this.trackOptions();
    const { unit } = axisInfo(this.trackName, mode);
    drawGrid(ctx, view, { unit, theme });
    const track = this.track;
    if (track) {
      drawPolyline(ctx, trackPoints(track, view), { color: theme.curve });
      drawKeys(ctx, view, track.keys, { selected: this.selected, hover: this.hover, theme });
    }
    ctx.font = theme.font;
    ctx.textAlign = "left";
    ctx.textBaseline = "top";
    ctx.fillStyle = theme.text;
    ctx.fillText(`${this.trackName} · ${mode} · ${interp}${track ? "" : " · no keys"}`, view.rect.x, 4);
    ctx.textBaseline = "bottom";
    ctx.fillText(this.status(), view.rect.x, height - 1);
    if (this.error !== null) this.drawError(ctx, width, height, theme);
  }

  drawError(ctx, width, height, theme) {
    ctx.fillStyle = "rgba(0, 0, 0, 0.75)";
    ctx.fillRect(0, 0, width, height);
    ctx.fillStyle = theme.error;
    ctx.font = theme.font;
    ctx.textAlign = "left";
    ctx.textBaseline = "top";
    const message = `${this.error} (the text is kept; fix it to edit here again)`;
    const lines = wrapText(message, Math.max(20, Math.floor((width - 12) / 6)));
    lines.forEach((line, i) => ctx.fillText(line, 6, 6 + i * 13));
  }
}

/** Split `text` into lines of at most `maxChars` characters, at spaces where possible. */
export function wrapText(text, maxChars) {
  const lines = [];
  let line = "";
  for (const word of text.split(" ")) {
    let rest = word;
    while (rest.length > maxChars) {
      if (line) lines.push(line);
      line = "";
      lines.push(rest.slice(0, maxChars));
      rest = rest.slice(maxChars);
    }
    if (!line) line = rest;
    else if (line.length + 1 + rest.length <= maxChars) line += ` ${rest}`;
    else {
      lines.push(line);
      line = rest;
    }
  }
  if (line) lines.push(line);
  return lines;
}
