// The few DOM helpers every module needs: find an element, make one.

/** The element with this id (the page's elements all have ids; see index.html). */
export const $ = (id) => document.getElementById(id);

/** A new `tag` element of `className`, holding `text` if given. */
export function el(tag, className, text = "") {
  const made = document.createElement(tag);
  made.className = className;
  if (text) made.textContent = text;
  return made;
}

/** A button showing only the sprite's `icon` (index.html's <symbol id>), named by `label` for screen readers. */
export function iconButton(className, icon, label) {
  const button = el("button", className);
  button.type = "button";
  if (label) button.setAttribute("aria-label", label);
  button.innerHTML = `<svg aria-hidden="true"><use href="#${icon}"/></svg>`;
  return button;
}
