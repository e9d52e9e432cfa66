// Why calls end, in words: one table for the call view and the history.

/** The gateway's `ended.cause` words (docs/protocol.md), for when its reason is missing. */
export const CAUSE_WORDS = {
  normal: "Call ended",
  cancelled: "Cancelled",
  busy: "Busy",
  declined: "Declined",
  not_found: "Not found",
  unavailable: "Unavailable",
  no_answer: "No answer",
  rejected: "Rejected",
  answered_elsewhere: "Answered elsewhere",
  network_error: "Network error",
  failed: "Call failed",
};
