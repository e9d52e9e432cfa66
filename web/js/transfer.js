// Call transfer on the page: "Transfer" under an answered call opens a small
// form. Its "Transfer" hands the call on at once (blind: the other side is
// connected to that number and this call ends); "Ask first" puts the call on
// hold and calls the number, and once that call is answered "Complete
// transfer" joins the two and leaves them talking. The gateway checks the
// number as if it had been dialled here. When the other side transfers this
// call, the note says so until the new party answers (phone.js places that call
// itself for a direct call between two browsers).

import { cleanTarget } from "./dialtarget.js";
import { displayAddress } from "./ui.js";
import { $ } from "./dom.js";

/** Wire the transfer controls to `phone`; returns the function that renders them for a Phone.view(). */
export function startTransfer({ phone, onError }) {
  const els = {
    panel: $("transfer"),
    open: $("transfer-open"),
    form: $("transfer-form"),
    to: $("transfer-to"),
    consult: $("transfer-consult"),
    cancel: $("transfer-cancel"),
    complete: $("transfer-complete"),
    note: $("transfer-note"),
  };
  let formOpen = false;

  const close = () => {
    formOpen = false;
    els.to.value = "";
    render(phone.view());
    els.open.focus({ preventScroll: true });
  };
  const target = () => {
    const { to, problem } = cleanTarget(els.to.value);
    if (problem) {
      onError(new Error(problem.replace("to call", "to transfer to")));
      els.to.focus();
    }
    return to;
  };

  els.open.addEventListener("click", () => {
    formOpen = true;
    render(phone.view());
    els.to.focus();
  });
  els.form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const to = target();
    if (!to) return;
    formOpen = false;
    phone.transfer(to);
  });
  els.consult.addEventListener("click", () => {
    const to = target();
    if (!to) return;
    formOpen = false;
    phone.dial(to, { beside: true });
  });
  els.cancel.addEventListener("click", close);
  els.complete.addEventListener("click", () => phone.completeTransfer());
  // Inside the form, keys are typing: not DTMF, and Escape closes the form instead of hanging up.
  els.form.addEventListener("keydown", (ev) => {
    ev.stopPropagation();
    if (ev.key === "Escape") close();
  });

  function render(v) {
    formOpen &&= v.canTransfer;
    const note = noteFor(v);
    els.panel.hidden = !(v.canTransfer || v.canCompleteTransfer || note);
    els.open.hidden = formOpen || !v.canTransfer;
    els.form.hidden = !formOpen;
    els.complete.hidden = !v.canCompleteTransfer;
    els.note.textContent = note;
    els.note.hidden = !note;
  }
  return render;
}

function noteFor(v) {
  if (v.transferTo === "call") return "Joining your two calls…";
  if (v.transferTo) return `Transferring to ${displayAddress(v.transferTo) || v.transferTo}…`;
  if (v.transferredTo) {
    const by = displayAddress(v.peerName || v.peer) || "The other side";
    return `${by} is transferring you to ${displayAddress(v.transferredTo)}…`;
  }
  return "";
}
