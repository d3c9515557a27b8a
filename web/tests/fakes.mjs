// Test doubles: a 2D context that records calls, a minimal DOM, a stub of ComfyUI's `app`.
// (Not a test file itself: node --test only runs *.test.mjs here.)

/** A CanvasRenderingContext2D stand-in: records every call and property write in `calls`. */
export function fakeContext() {
  const calls = [];
  const state = {};
  return new Proxy(state, {
    get(target, prop) {
      if (prop === "calls") return calls;
      if (prop === "measureText") return (text) => ({ width: String(text).length * 6 });
      if (prop in target) return target[prop];
      if (typeof prop === "symbol") return undefined;
      return (...args) => {
        calls.push([prop, ...args]);
      };
    },
    set(target, prop, value) {
      calls.push(["set", prop, value]);
      target[prop] = value;
      return true;
    },
  });
}

/** Calls named `name` recorded by a fake context. */
export function callsNamed(ctx, name) {
  return ctx.calls.filter((c) => c[0] === name);
}

class FakeElement {
  constructor(tag) {
    this.tagName = tag.toUpperCase();
    this.style = {};
    this.children = [];
    this.listeners = {};
    this.clientWidth = 400;
    this.clientHeight = 200;
    this.value = "";
    this.disabled = false;
    this.context = null;
  }
  append(...children) {
    this.children.push(...children);
  }
  replaceChildren(...children) {
    this.children = children;
  }
  addEventListener(type, listener) {
    (this.listeners[type] ??= []).push(listener);
  }
  /** Fire `type` with a fake event; returns the event (check `defaultPrevented`). */
  dispatch(type, init = {}) {
    const event = {
      type,
      button: 0,
      pointerId: 1,
      clientX: 0,
      clientY: 0,
      defaultPrevented: false,
      propagationStopped: false,
      preventDefault() {
        this.defaultPrevented = true;
      },
      stopPropagation() {
        this.propagationStopped = true;
      },
      ...init,
    };
    for (const listener of this.listeners[type] ?? []) listener(event);
    return event;
  }
  getBoundingClientRect() {
    return { left: 0, top: 0, width: this.clientWidth, height: this.clientHeight };
  }
  getContext() {
    this.context ??= fakeContext();
    return this.context;
  }
  focus() {}
  setPointerCapture() {}
  releasePointerCapture() {}
  /** Depth-first search for the first element with this tag. */
  find(tag) {
    for (const child of this.children) {
      if (child.tagName === tag.toUpperCase()) return child;
      const inner = child.find?.(tag);
      if (inner) return inner;
    }
    return null;
  }
  findAll(tag) {
    const out = [];
    for (const child of this.children) {
      if (child.tagName === tag.toUpperCase()) out.push(child);
      out.push(...(child.findAll?.(tag) ?? []));
    }
    return out;
  }
}

/** Install `document` and `window` globals good enough for the extension modules. */
export function installFakeDom() {
  globalThis.document = { createElement: (tag) => new FakeElement(tag) };
  globalThis.window = { devicePixelRatio: 1, prompt: () => null, alert: () => {} };
}

/** A LiteGraph-like node type whose instances record the DOM widgets added to them. */
export function fakeNodeType() {
  function Node() {
    this.widgets = [];
    this.size = [300, 120];
    this.dirty = 0;
  }
  Node.prototype.addDOMWidget = function (name, type, element, options) {
    const widget = { name, type, element, options };
    this.widgets.push(widget);
    return widget;
  };
  Node.prototype.computeSize = function () {
    return [320, 400];
  };
  Node.prototype.setSize = function (size) {
    this.size = size;
  };
  Node.prototype.setDirtyCanvas = function () {
    this.dirty += 1;
  };
  return Node;
}
