// Contacts, kept by the gateway for the user (docs/protocol.md: `contacts`,
// `save_contact`, `delete_contact`), so every page and browser of the user has
// them: favourites first, each called with one press. The operator's shared
// contacts can be called, not changed. The gateway names callers by them.

import { cleanTarget } from "./dialtarget.js";
import { displayAddress } from "./ui.js";
import { $, el, iconButton } from "./dom.js";

const byFavouriteThenName = (a, b) => Number(b.favourite) - Number(a.favourite) || a.name.localeCompare(b.name);

/** Wire the panel to the gateway's messages. dial(number): place a call (returns nothing). */
export function startContacts({ sig, dial, canDial, onError }) {
  const listEl = $("contacts");
  const empty = $("contacts-empty");
  const add = $("contact-add");
  const form = $("contact-form");
  const formTitle = $("contact-form-title");
  const name = $("contact-name");
  const number = $("contact-number");
  const favourite = $("contact-favourite");
  const problem = $("contact-error");
  const cancel = $("contact-cancel");
  let contacts = [];
  let editing = null; // the contact being edited, {} for a new one, null while the form is closed

  function render() {
    listEl.replaceChildren(
      ...[...contacts].sort(byFavouriteThenName).map((c) => {
        const li = el("li", "contact");
        li.dataset.id = c.id;
        li.dataset.favourite = String(c.favourite);
        const info = el("div", "contact-info");
        const who = el("span", "contact-name");
        if (c.favourite) {
          who.insertAdjacentHTML("beforeend", '<svg class="contact-star" role="img" aria-label="Favourite"><use href="#i-star"/></svg>');
        }
        who.append(c.name);
        const address = el("span", "contact-number");
        address.textContent = c.shared ? `${displayAddress(c.number) || c.number} · shared` : displayAddress(c.number) || c.number;
        address.title = c.number;
        info.append(who, address);
        const call = iconButton("contact-call", "i-phone", `Call ${c.name}`);
        li.append(info, call);
        if (!c.shared) {
          li.append(iconButton("contact-tool contact-edit", "i-edit", `Edit ${c.name}`));
          li.append(iconButton("contact-tool contact-delete", "i-close", `Delete ${c.name}`));
        }
        return li;
      }),
    );
    empty.hidden = contacts.length > 0;
    refresh();
  }

  /** Enable or disable the call buttons (not signed in, or in a call). */
  function refresh() {
    const allowed = canDial();
    for (const b of listEl.querySelectorAll(".contact-call")) b.disabled = !allowed;
  }

  function show(msg) {
    contacts = Array.isArray(msg.contacts) ? msg.contacts : [];
    // A contact deleted on another page is no longer edited here.
    if (editing?.id && !contacts.some((c) => c.id === editing.id)) close();
    render();
  }

  function open(contact) {
    editing = contact ?? {};
    formTitle.textContent = contact ? `Edit ${contact.name}` : "New contact";
    name.value = contact?.name ?? "";
    number.value = contact?.number ?? "";
    favourite.setAttribute("aria-pressed", String(!!contact?.favourite));
    say("");
    form.hidden = false;
    add.setAttribute("aria-expanded", "true");
    name.focus();
  }

  function close() {
    editing = null;
    form.hidden = true;
    add.setAttribute("aria-expanded", "false");
  }

  function say(text, field = null) {
    problem.textContent = text;
    problem.hidden = !text;
    if (field) field.focus();
  }

  function focusRow(id, selector) {
    const row = [...listEl.children].find((li) => li.dataset.id === id);
    (row?.querySelector(selector) ?? add).focus();
  }

  async function save() {
    if (!name.value.trim()) return say("Enter a name.", name);
    const { to, problem: wrong } = cleanTarget(number.value);
    if (wrong) return say(wrong, number);
    const before = new Set(contacts.map((c) => c.id));
    const request = { type: "save_contact", name: name.value.trim(), number: to, favourite: favourite.getAttribute("aria-pressed") === "true" };
    if (editing.id) request.contact = editing.id;
    try {
      show(await sig.request(request));
    } catch (err) {
      if (err.code === "invalid_contact") return say(err.message, err.field === "number" ? number : name);
      onError(err);
      return;
    }
    const saved = editing.id ?? contacts.find((c) => !before.has(c.id))?.id;
    close();
    focusRow(saved, ".contact-call");
  }

  async function remove(contact) {
    try {
      show(await sig.request({ type: "delete_contact", contact: contact.id }));
      add.focus();
    } catch (err) {
      onError(err);
    }
  }

  add.addEventListener("click", () => (form.hidden ? open(null) : close()));
  cancel.addEventListener("click", () => {
    const id = editing?.id;
    close();
    id ? focusRow(id, ".contact-edit") : add.focus();
  });
  favourite.addEventListener("click", () => {
    favourite.setAttribute("aria-pressed", String(favourite.getAttribute("aria-pressed") !== "true"));
  });
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    save();
  });
  listEl.addEventListener("click", (ev) => {
    const button = ev.target.closest("button");
    const contact = contacts.find((c) => c.id === button?.closest(".contact")?.dataset.id);
    if (!button || !contact || button.disabled) return;
    if (button.classList.contains("contact-call")) dial(contact.number);
    else if (button.classList.contains("contact-edit")) open(contact);
    else if (button.classList.contains("contact-delete")) remove(contact);
  });

  sig.on("contacts", show);
  // Another user may sign in here next: nothing of this one's stays on the page.
  sig.on("signed_out", () => {
    close();
    show({ contacts: [] });
  });

  render();
  return { refresh };
}
