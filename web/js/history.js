// Call history, kept by the gateway for the user (docs/protocol.md: `history`,
// `history_entry`), so every page and browser of the user shows the same list:
// newest first, one button per entry to call back, and the last number for Redial.

import { CAUSE_WORDS, isMissed } from "./causes.js";
import { displayAddress, formatDuration } from "./ui.js";
import { $, el, iconButton } from "./dom.js";

const MAX_ENTRIES = 200; // as many as the gateway keeps

// The gateway's end causes in words, plus the outcomes only history knows.
const OUTCOME_WORDS = { ...CAUSE_WORDS, answered: "Answered", failed: "Failed", missed: "Missed" };

// Before the gateway kept it, history lived in this browser's storage: gone now.
try {
  localStorage.removeItem("webphone.history");
} catch {
  // Storage may be disabled.
}

/** A gateway history entry as the list shows it. */
function fromGateway(e) {
  const d = { direction: e.direction, answeredAt: e.answered ? 1 : 0, cause: e.cause };
  return {
    time: Number(e.start) * 1000,
    number: String(e.peer ?? ""),
    name: e.contact_name || e.peer_name || "",
    direction: e.direction,
    duration: Number(e.duration) * 1000,
    outcome: outcomeOf(d),
  };
}

/** What happened, in one word, from the phone's `callended` detail. */
function outcomeOf(d) {
  if (d.answeredAt) return "answered";
  if (isMissed(d)) return "missed";
  if (d.direction === "in") return d.cause; // declined here or answered elsewhere
  if (d.cause === "normal") return "cancelled";
  return OUTCOME_WORDS[d.cause] ? d.cause : "failed";
}

/** A list entry's who (`address` on hover) and, below, when: "<before><time><after>". */
export function entryInfo(who, address, when, before, after) {
  const name = el("span", "history-who", who);
  name.title = address;
  const time = el("time", "");
  time.dateTime = when.toISOString();
  time.textContent = when.toLocaleString([], { dateStyle: "short", timeStyle: "short" });
  const meta = el("span", "history-meta");
  meta.append(before, time, after);
  const info = el("div", "history-info");
  info.append(name, meta);
  return info;
}

/** Wire the list to the gateway's messages. dial(number): place a call (returns nothing). */
export function startHistory({ sig, dial, canDial, onError }) {
  const listEl = $("history");
  const empty = $("history-empty");
  const clear = $("history-clear");
  const redial = $("redial");
  const redialLabel = $("redial-label");
  let entries = [];

  function lastOutgoing() {
    return entries.find((e) => e.direction === "out")?.number ?? "";
  }

  function render() {
    listEl.replaceChildren(
      ...entries.map((e) => {
        const li = el("li", "history-item");
        li.dataset.outcome = e.outcome;
        const who = e.name || displayAddress(e.number) || e.number;
        const when = new Date(e.time);
        const dir = e.direction === "in" ? "Incoming" : "Outgoing";
        const outcome = OUTCOME_WORDS[e.outcome] ?? e.outcome;
        const length = e.outcome === "answered" ? formatDuration(e.duration) : outcome;
        const info = entryInfo(who, e.number, when, `${e.direction === "in" ? "↙" : "↗"} ${dir} · `, ` · ${length}`);
        const button = iconButton("history-call", "i-phone", `Call ${who} back`);
        button.dataset.number = e.number;
        li.append(info, button);
        return li;
      }),
    );
    empty.hidden = entries.length > 0;
    clear.hidden = entries.length === 0;
    refresh();
  }

  /** Enable or disable the call-back buttons (not signed in, or in a call). */
  function refresh() {
    const allowed = canDial();
    const last = lastOutgoing();
    redial.disabled = !allowed || !last;
    redial.title = last ? `Call ${displayAddress(last) || last} again` : "";
    redialLabel.textContent = "Redial";
    redial.setAttribute("aria-label", last ? `Redial ${displayAddress(last) || last}` : "Redial");
    for (const b of listEl.querySelectorAll(".history-call")) b.disabled = !allowed;
  }

  listEl.addEventListener("click", (ev) => {
    const button = ev.target.closest(".history-call");
    if (button && !button.disabled) dial(button.dataset.number);
  });
  redial.addEventListener("click", () => {
    const last = lastOutgoing();
    if (last) dial(last);
  });
  clear.addEventListener("click", async () => {
    try {
      show(await sig.request({ type: "clear_history" }));
      redial.focus();
    } catch (err) {
      onError(err);
    }
  });

  function show(msg) {
    entries = Array.isArray(msg.entries) ? msg.entries.map(fromGateway) : [];
    render();
  }
  sig.on("history", show);
  sig.on("history_entry", (msg) => {
    entries = [fromGateway(msg.entry), ...entries].slice(0, MAX_ENTRIES);
    render();
  });
  // Another user may sign in here next: nothing of this one's stays on the page.
  sig.on("signed_out", () => show({ entries: [] }));

  render();
  return { refresh };
}
