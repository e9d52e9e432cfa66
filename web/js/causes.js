// How calls end, in words: one table for the call view, the history and the
// tab title. Sentences are the page's own; the gateway's `reason` fills in only
// where it names a cause the page cannot know (a network or engine failure).

/** The gateway's `ended.cause` words (docs/protocol.md), short, for the history. */
export const CAUSE_WORDS = {
  normal: "Call ended",
  cancelled: "Cancelled",
  busy: "Busy",
  declined: "Declined",
  not_found: "Not found",
  unavailable: "Not available",
  no_answer: "No answer",
  not_responding: "Not responding",
  rejected: "Not allowed",
  answered_elsewhere: "Answered elsewhere",
  transferred: "Transferred",
  network_error: "Connection lost",
  failed: "Call failed",
};

// A user name on this gateway, as the dialplan knows them (dialplan/permissions.py).
const USER_NAME = /^[a-z0-9][a-z0-9._-]{0,31}$/;
const BUSY_HERE = new Set([486, 600]);

// Per cause: how it looks (neutral, notice or error) and what it says about `who`.
// `end` is the gateway's `ended` message (or the page's own stand-in).
const ENDINGS = {
  normal: { tone: "neutral", say: () => "Call ended" },
  cancelled: { tone: "neutral", say: () => "Call cancelled" },
  answered_elsewhere: { tone: "neutral", say: () => "Answered on another device" },
  transferred: { tone: "neutral", say: () => "Call transferred" },
  busy: { tone: "notice", say: (who, end) => (BUSY_HERE.has(end.code) ? `${who} is busy` : "All lines are busy. Try again in a moment") },
  declined: { tone: "notice", say: (who) => `${who} declined the call` },
  no_answer: { tone: "notice", say: (who) => `${who} did not answer` },
  not_responding: { tone: "error", say: (who) => `${who} is not responding` },
  unavailable: { tone: "notice", say: (who) => (USER_NAME.test(who) ? `${who} is not signed in` : `${who} is not available`) },
  not_found: { tone: "error", say: (who) => (USER_NAME.test(who) && /[a-z]/.test(who) ? `There is no user called ${who}` : `${who} is not a number in use`) },
  rejected: { tone: "error", say: () => "This call is not allowed" },
  network_error: { tone: "error", say: (who, end) => reasonOf(end) || "The connection was lost" },
  failed: { tone: "error", say: (who, end) => reasonOf(end) || "The call failed" },
};

function reasonOf(end) {
  return typeof end.reason === "string" ? end.reason.trim().replace(/\.$/, "") : "";
}

/** An incoming call that ended before anyone here answered it, and not by our own Decline. */
export function isMissed({ direction, answeredAt, cause }) {
  return direction === "in" && !answeredAt && cause !== "declined" && cause !== "answered_elsewhere";
}

/**
 * How a call's end reads: {text, tone, detail}. call: {direction, answeredAt, who};
 * end: {cause, code, reason}. detail keeps the SIP code for support, off the main text.
 */
export function describeEnd(call, end) {
  const detail = Number(end.code) > 0 ? `SIP ${end.code} (${end.cause})` : "";
  const who = call.who || "The other side";
  if (isMissed({ ...call, cause: end.cause })) return { text: `Missed call from ${who}`, tone: "missed", detail };
  if (call.direction === "in" && end.cause === "declined" && !call.answeredAt) {
    return { text: `You declined the call from ${who}`, tone: "neutral", detail };
  }
  const ending = ENDINGS[end.cause] ?? ENDINGS.failed;
  return { text: ending.say(who, end), tone: ending.tone, detail };
}
