// web/js/json_text.js: a JSON reader with CPython's error messages and positions.
import assert from "node:assert/strict";
import { test } from "node:test";

import { JsonTextError, lineColumn, parseJsonText } from "../js/json_text.js";

function failure(text) {
  try {
    parseJsonText(text);
  } catch (e) {
    assert.ok(e instanceof JsonTextError);
    return [e.msg, e.pos, e.line, e.column];
  }
  assert.fail(`no error for ${JSON.stringify(text)}`);
}

test("decodes what JSON.parse decodes", () => {
  const texts = [
    '{"a": [1, -2.5e3, true, false, null], "b": {"c": "x\\u00e9\\n\\"\\/"}}',
    "[]",
    " 0 ",
    '"\\ud83d\\ude00"',
    "{}",
  ];
  for (const text of texts) assert.deepEqual(parseJsonText(text), JSON.parse(text));
});

test("accepts Python's NaN and Infinity literals", () => {
  assert.deepEqual(parseJsonText("[NaN, Infinity, -Infinity]"), [NaN, Infinity, -Infinity]);
});

test("errors carry CPython's message and position", () => {
  // expected values are what json.loads reports (CPython 3.11)
  assert.deepEqual(failure('{"a": 1,}'), ["Expecting property name enclosed in double quotes", 8, 1, 9]);
  assert.deepEqual(failure('{"a" 1}'), ["Expecting ':' delimiter", 5, 1, 6]);
  assert.deepEqual(failure('{\n  "a": [1, 2\n}'), ["Expecting ',' delimiter", 15, 3, 1]);
  assert.deepEqual(failure(""), ["Expecting value", 0, 1, 1]);
  assert.deepEqual(failure('{"a": 1} x'), ["Extra data", 9, 1, 10]);
  assert.deepEqual(failure('{"a": tru}'), ["Expecting value", 6, 1, 7]);
  assert.deepEqual(failure('{"a": 01}'), ["Expecting ',' delimiter", 7, 1, 8]);
  assert.deepEqual(failure('{"a": "abc'), ["Unterminated string starting at", 6, 1, 7]);
  assert.deepEqual(failure('{"a": "x\ny"}'), ["Invalid control character at", 8, 1, 9]);
  assert.deepEqual(failure('{"a": [1,,2]}'), ["Expecting value", 9, 1, 10]);
});

test("keys such as __proto__ stay plain data", () => {
  const value = parseJsonText('{"__proto__": {"polluted": 1}}');
  assert.equal(Object.getPrototypeOf(value), Object.prototype);
  assert.deepEqual(Object.keys(value), ["__proto__"]);
  assert.equal({}.polluted, undefined);
});

test("lineColumn counts like CPython", () => {
  assert.deepEqual(lineColumn("ab\ncd", 0), { line: 1, column: 1 });
  assert.deepEqual(lineColumn("ab\ncd", 3), { line: 2, column: 1 });
  assert.deepEqual(lineColumn("ab\ncd", 4), { line: 2, column: 2 });
});
