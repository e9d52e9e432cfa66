// Missed calls and voicemail, kept by the gateway for the signed-in user
// (docs/protocol.md, "mailbox"): a badge with the count of new entries, a
// list with Play, Mark heard and Delete, and a notification for a new one
// while the tab is in the background.

import { displayAddress, formatDuration } from "./ui.js";
import { $, el } from "./dom.js";
import { entryInfo } from "./history.js";

/**
 * request(msg): a request with a reply (mailbox_play); send(msg): one without (mailbox_heard, mailbox_delete);
 * notify(title, body, tag): a notification while the tab is hidden; onError(err): show a failure.
 */
export function startMailbox({ request, send, notify, onError }) {
  const badge = $("mailbox-badge");
  const count = $("mailbox-count");
  const listEl = $("mailbox-list");
  const empty = $("mailbox-empty");
  const player = $("mailbox-audio");
  let entries = [];
  let playing = ""; // the entry whose message plays

  const who = (e) => e.from_name || displayAddress(e.from) || e.from || "Unknown caller";

  function button(action, label, text, entry) {
    const b = el("button", `btn btn-quiet btn-small mailbox-${action}`, text);
    b.type = "button";
    b.dataset.action = action;
    b.dataset.entry = entry.id;
    b.setAttribute("aria-label", `${label} ${who(entry)}`);
    return b;
  }

  function render() {
    const fresh = entries.filter((e) => e.new).length;
    badge.hidden = fresh === 0;
    count.textContent = String(fresh);
    badge.setAttribute("aria-label", `${fresh} new missed ${fresh === 1 ? "call" : "calls"} and voicemail`);
    listEl.replaceChildren(
      ...entries.map((e) => {
        const li = el("li", "history-item mailbox-item");
        li.dataset.entry = e.id;
        li.dataset.new = String(e.new);
        const what = e.voicemail ? `Voicemail ${formatDuration(Math.round(e.voicemail * 1000))}` : "Missed call";
        const info = entryInfo(who(e), e.from, new Date(e.time * 1000), "", ` · ${what}`);
        const actions = el("div", "mailbox-actions");
        if (e.voicemail) actions.append(button("play", "Play the message from", playing === e.id ? "Stop" : "Play", e));
        if (e.new) actions.append(button("heard", "Mark as heard:", "Heard", e));
        actions.append(button("delete", "Delete", "Delete", e));
        li.append(info, actions);
        return li;
      }),
    );
    empty.hidden = entries.length > 0;
  }

  async function play(id) {
    if (playing === id) {
      stop();
      return;
    }
    try {
      const reply = await request({ type: "mailbox_play", entry: id });
      playing = id;
      player.src = reply.url;
      render();
      await player.play();
      send({ type: "mailbox_heard", entry: id });
    } catch (err) {
      stop();
      onError(err?.code ? err : new Error(`The message could not be played${err?.message ? `: ${err.message}` : ""}.`));
    }
  }

  function stop() {
    playing = "";
    player.pause();
    player.removeAttribute("src");
    render();
  }

  player.addEventListener("ended", stop);
  listEl.addEventListener("click", (ev) => {
    const b = ev.target.closest("button[data-action]");
    if (!b) return;
    const id = b.dataset.entry;
    if (b.dataset.action === "play") play(id);
    else {
      if (b.dataset.action === "delete" && playing === id) stop();
      send({ type: `mailbox_${b.dataset.action}`, entry: id });
    }
  });

  render();
  return {
    /** The gateway's list (at sign-in, and on every change); `added`: the entry that just came. */
    show(list, added = null) {
      entries = Array.isArray(list) ? list : [];
      if (playing && !entries.some((e) => e.id === playing)) stop();
      render();
      if (added) {
        const title = added.voicemail ? "New voicemail" : "Missed call";
        notify(title, `From ${who(added)}`, `mailbox-${added.id}`);
      }
    },
  };
}
