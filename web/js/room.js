// Conference rooms (docs/protocol.md: room): a room is joined by dialling its number; while the call
// in view is in one, the call panel names the room and how many are in it, the roster on hover.

import { $ } from "./dom.js";

/** Show the room of the call in view in #room-info, from the gateway's `room` messages. */
export function startRoom({ sig }) {
  const info = $("room-info");
  const rooms = new Map(); // call id -> the latest `room` message for it
  let view = null;

  sig.on("room", (msg) => {
    rooms.set(msg.call, msg);
    render();
  });

  function render() {
    const room = view?.state === "answered" ? rooms.get(view.callId) : undefined;
    info.hidden = !room;
    if (!room) return;
    const count = room.participants.length;
    info.textContent = `Room ${room.room} · ${count} ${count === 1 ? "person" : "people"}`;
    info.title = room.participants.join(", ");
    info.dataset.participants = String(count);
  }

  return {
    /** The phone's view changed; a call that ended forgets its room. */
    update(next) {
      view = next;
      if (next.state === "ended" || next.state === "idle") rooms.delete(next.callId);
      render();
    },
  };
}
