// Tiny DOM helpers. Data is only ever written as text nodes or attribute values
// (never through innerHTML), so ids and values from the API cannot become markup; and
// shown with its bidirectional controls made visible (`visible`), so a value cannot
// reorder what is drawn around it or inside it (an id "TX-\u202e100000" drawn as
// "TX-000001").

const SHOWN = new Set(["title", "aria-label", "alt"]); // attributes drawn as text
const BIDI_CONTROLS = /[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

/** `value` as text, each bidirectional control written out as ⟨U+XXXX⟩. */
export function visible(value) {
  return String(value).replace(
    BIDI_CONTROLS,
    (ch) => `⟨U+${ch.codePointAt(0).toString(16).toUpperCase().padStart(4, "0")}⟩`,
  );
}

/**
 * Create an element. `attrs`: `class`, `text`, `on<event>` handlers, `dataset`,
 * booleans (true → present, false/null/undefined → absent), else attribute strings.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs ?? {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "text") el.textContent = visible(value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else el.setAttribute(key, value === true ? "" : SHOWN.has(key) ? visible(value) : String(value));
  }
  append(el, ...children);
  return el;
}

/** Append children: nodes as they are, anything else as text; null/false skipped. */
export function append(el, ...children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.appendChild(child instanceof Node ? child : document.createTextNode(visible(child)));
  }
  return el;
}

/** Replace all children of `el`. */
export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, ...children);
}

/** A hash link to one of the console's views, e.g. viewLink("tx", "T1"). */
export function viewLink(view, id, label = id) {
  return h("a", { href: `#/${view}/${encodeURIComponent(id)}` }, label);
}
