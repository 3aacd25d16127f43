// What every page's script builds its screen with: elements made by DOM calls (text is never
// parsed as HTML: names and addresses are typed by people), lists kept in place, the page's
// one status line and its texts from the page's own message table.

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined && child !== false) node.append(child);
  }
  return node;
}

// Puts `items` in `container` in order, reusing the child whose key (what it shows) is
// unchanged: a card half filled in survives the polls.
export function reconcile(container, items, keyOf, build) {
  const existing = new Map([...container.children].map((child) => [child.dataset.key, child]));
  const wanted = items.map((item) => {
    const key = keyOf(item);
    const node = existing.get(key) ?? build(item);
    node.dataset.key = key;
    existing.delete(key);
    return node;
  });
  for (const stale of existing.values()) stale.remove();
  wanted.forEach((node, i) => {
    if (container.children[i] !== node) container.insertBefore(node, container.children[i] ?? null);
  });
}

// One line of a card's facts (base.css: .fact): a label and what it says.
export function fact(label, ...value) {
  return el("div", { class: "fact" }, el("dt", {}, label), el("dd", {}, ...value));
}

// The page's status line (#message): `kind` is "notice" or "error".
export function say(text, kind = "notice") {
  const message = document.getElementById("message");
  message.textContent = text;
  message.dataset.kind = kind;
}

// The title and every [data-text] node, from the page's message table.
export function fillTexts(t) {
  document.title = t("title");
  for (const node of document.querySelectorAll("[data-text]")) node.textContent = t(node.dataset.text);
  // What a screen reader says of an element with no text of its own (aria-label), from the table too.
  for (const node of document.querySelectorAll("[data-label]")) node.setAttribute("aria-label", t(node.dataset.label));
}
