// A small JSON reader whose errors match CPython's `json` module (3.10-3.12): the same messages
// ("Expecting ',' delimiter", "Expecting value", ...) at the same character positions, and the
// same extension literals NaN, Infinity and -Infinity.  It lets the editor report a malformed
// keyframe string exactly as the Python node will.  Pure module: no DOM, no ComfyUI.

const WHITESPACE = " \t\n\r";
const NUMBER = /-?(?:0|[1-9]\d*)(\.\d+)?([eE][-+]?\d+)?/y;
const SIMPLE_ESCAPES = { '"': '"', "\\": "\\", "/": "/", b: "\b", f: "\f", n: "\n", r: "\r", t: "\t" };
const LITERALS = [
  ["null", null], ["true", true], ["false", false], ["NaN", NaN], ["Infinity", Infinity], ["-Infinity", -Infinity],
];

/** Error thrown by {@link parseJsonText}: `msg` as CPython words it, `pos` a 0-based index. */
export class JsonTextError extends Error {
  constructor(msg, text, pos) {
    const { line, column } = lineColumn(text, pos);
    super(`${msg}: line ${line} column ${column} (char ${pos})`);
    this.msg = msg;
    this.pos = pos;
    this.line = line;
    this.column = column;
  }
}

/** 1-based line and column of index `pos` in `text`, counted as CPython does. */
export function lineColumn(text, pos) {
  let line = 1;
  let lineStart = 0;
  for (let i = 0; i < pos && i < text.length; i++) {
    if (text[i] === "\n") {
      line += 1;
      lineStart = i + 1;
    }
  }
  return { line, column: pos - lineStart + 1 };
}

function skipWhitespace(text, i) {
  while (i < text.length && WHITESPACE.includes(text[i])) i++;
  return i;
}

function setOwn(obj, key, value) {
  // defineProperty, so that a key such as "__proto__" stays a plain data key
  Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
}

function scanString(text, quote) {
  // `quote` is the index of the opening quote; returns [string, index after the closing quote]
  let out = "";
  let i = quote + 1;
  for (;;) {
    if (i >= text.length) throw new JsonTextError("Unterminated string starting at", text, quote);
    const c = text[i];
    if (c === '"') return [out, i + 1];
    if (c < " ") throw new JsonTextError("Invalid control character at", text, i);
    if (c !== "\\") {
      out += c;
      i += 1;
      continue;
    }
    if (i + 1 >= text.length) throw new JsonTextError("Unterminated string starting at", text, quote);
    const esc = text[i + 1];
    if (esc === "u") {
      const hex = text.slice(i + 2, i + 6);
      if (!/^[0-9a-fA-F]{4}$/.test(hex)) throw new JsonTextError("Invalid \\uXXXX escape", text, i + 1);
      out += String.fromCharCode(parseInt(hex, 16));
      i += 6;
    } else if (esc in SIMPLE_ESCAPES) {
      out += SIMPLE_ESCAPES[esc];
      i += 2;
    } else {
      throw new JsonTextError("Invalid \\escape", text, i);
    }
  }
}

function scanValue(text, i) {
  // returns [value, index after it]; a value that cannot start here is "Expecting value" at i
  const c = text[i];
  if (c === '"') return scanString(text, i);
  if (c === "{") return scanObject(text, i + 1);
  if (c === "[") return scanArray(text, i + 1);
  for (const [word, value] of LITERALS) {
    if (text.startsWith(word, i)) return [value, i + word.length];
  }
  NUMBER.lastIndex = i;
  const m = NUMBER.exec(text);
  if (m !== null) return [Number(m[0]), i + m[0].length];
  throw new JsonTextError("Expecting value", text, i);
}

function scanObject(text, i) {
  const obj = {};
  i = skipWhitespace(text, i);
  if (text[i] === "}") return [obj, i + 1];
  for (;;) {
    if (text[i] !== '"') throw new JsonTextError("Expecting property name enclosed in double quotes", text, i);
    let key;
    [key, i] = scanString(text, i);
    i = skipWhitespace(text, i);
    if (text[i] !== ":") throw new JsonTextError("Expecting ':' delimiter", text, i);
    i = skipWhitespace(text, i + 1);
    let value;
    [value, i] = scanValue(text, i);
    setOwn(obj, key, value);
    i = skipWhitespace(text, i);
    if (text[i] === "}") return [obj, i + 1];
    if (text[i] !== ",") throw new JsonTextError("Expecting ',' delimiter", text, i);
    i = skipWhitespace(text, i + 1);
  }
}

function scanArray(text, i) {
  const arr = [];
  i = skipWhitespace(text, i);
  if (text[i] === "]") return [arr, i + 1];
  for (;;) {
    let value;
    [value, i] = scanValue(text, i);
    arr.push(value);
    i = skipWhitespace(text, i);
    if (text[i] === "]") return [arr, i + 1];
    if (text[i] !== ",") throw new JsonTextError("Expecting ',' delimiter", text, i);
    i = skipWhitespace(text, i + 1);
  }
}

/**
 * Parse JSON text like CPython's `json.loads`.
 * @param {string} text
 * @returns {*} the decoded value
 * @throws {JsonTextError} with CPython's message and position
 */
export function parseJsonText(text) {
  let [value, i] = scanValue(text, skipWhitespace(text, 0));
  i = skipWhitespace(text, i);
  if (i !== text.length) throw new JsonTextError("Extra data", text, i);
  return value;
}
