// Conference rooms (docs/protocol.md: room): a room is joined by dialling its number; while the call
// in view is in one, the call panel names the room and how many are in it, the roster on hover.
// The gateway refuses to hold, record or transfer a room call, so those buttons are disabled then,
// each described by #room-note, which says why (read out by screen readers, shown on hover).

import { $ } from "./dom.js";

// What a room call cannot do; each button's own module enables it again on its next render.
const NOT_IN_A_ROOM = ["hold", "record", "transfer-open"];

/** Show the room of the call in view in #room-info, from the gateway's `room` messages. */
export function startRoom({ sig }) {
  const info = $("room-info");
  const note = $("room-note");
  const rooms = new Map(); // call id -> the latest `room` message for it
  let view = null;

  sig.on("room", (msg) => {
    rooms.set(msg.call, msg);
    render();
  });

  function render() {
    const room = view?.state === "answered" ? rooms.get(view.callId) : undefined;
    info.hidden = !room;
    restrict(!!room);
    if (!room) return;
    const count = room.participants.length;
    info.textContent = `Room ${room.room} · ${count} ${count === 1 ? "person" : "people"}`;
    info.title = room.participants.join(", ");
    info.dataset.participants = String(count);
  }

  function restrict(inRoom) {
    for (const button of NOT_IN_A_ROOM.map($)) {
      if (inRoom) {
        button.disabled = true;
        button.setAttribute("aria-describedby", note.id);
        button.title = note.textContent;
      } else if (button.getAttribute("aria-describedby") === note.id) {
        button.removeAttribute("aria-describedby");
        button.title = "";
      }
    }
  }

  return {
    /** The phone's view changed (after the other controls rendered it); a call that ended forgets its room. */
    update(next) {
      view = next;
      if (next.state === "ended" || next.state === "idle") rooms.delete(next.callId);
      render();
    },
  };
}
