// What the number field may send as `call.to`. The page cleans what people
// paste (spaces, dashes, brackets, a "(office)" label, a tel: prefix) and
// refuses only what no dialplan could route, so a typo never becomes a call.
// Which numbers exist, and how they are written for a trunk, is the gateway's
// dialplan's business (it knows the home country and the trunks).

const SIP = /^sips?:/i;
const ADDRESS = /^[^\s@:]+@[^\s@]+$/; // bob@example.com, meant as sip:bob@example.com
const LABEL = /\([^()]*\p{L}[^()]*\)/gu; // "(office)", "(mobile)"
const SEPARATORS = /[\s\-.()/]/g;
const NUMBER = /^\+?[0-9*#]{1,32}$/;
const USER_NAME = /^[a-z0-9][a-z0-9._-]{0,31}$/i; // the dialplan's user names (dialplan/permissions.py)

/** {to} to call, or {problem} in words for the user. */
export function cleanTarget(text) {
  const typed = String(text ?? "").trim();
  if (!typed) return { problem: "Enter a number, a user name or a sip: address to call." };
  if (SIP.test(typed)) return { to: typed };
  if (ADDRESS.test(typed)) return { to: `sip:${typed}` };
  const number = typed.replace(/^tel:/i, "").replace(LABEL, "").replace(SEPARATORS, "");
  if (NUMBER.test(number) && /\d/.test(number)) return { to: number };
  if (USER_NAME.test(typed)) return { to: typed };
  return { problem: `"${typed}" is not a number, a user name or a sip: address.` };
}
