// Audio settings: output volume, microphone and speaker choice (remembered
// in localStorage), and opt-in notifications for calls while the tab is hidden.

import { $ } from "./dom.js";

const VOLUME_KEY = "webphone.volume";
const MIC_KEY = "webphone.mic";
const SPEAKER_KEY = "webphone.speaker";

function remember(key, value) {
  try {
    localStorage.setItem(key, value);
  } catch {
    // Storage may be disabled.
  }
}

function recall(key) {
  try {
    return localStorage.getItem(key);
  } catch {
    return null;
  }
}

/** audio: #remote-audio; useMicrophone(deviceId): switch the microphone (also mid-call). */
export function startAudioSettings({ audio, useMicrophone, onError }) {
  const volume = $("volume");
  const volumeValue = $("volume-value");
  const micSelect = $("mic-select");
  const speakerSelect = $("speaker-select");
  const speakerField = $("speaker-field");
  const canPickSpeaker = typeof audio.setSinkId === "function";

  // --- volume
  const storedVolume = Number(recall(VOLUME_KEY));
  const initial = recall(VOLUME_KEY) !== null && storedVolume >= 0 && storedVolume <= 100 ? storedVolume : 100;
  volume.value = String(initial);
  const applyVolume = () => {
    const v = Math.max(0, Math.min(100, Number(volume.value) || 0));
    audio.volume = v / 100;
    volumeValue.textContent = `${v}%`;
    volume.setAttribute("aria-valuetext", `${v} percent`);
  };
  applyVolume();
  volume.addEventListener("input", () => {
    applyVolume();
    remember(VOLUME_KEY, volume.value);
  });

  // --- devices
  let micId = recall(MIC_KEY) ?? "";
  let speakerId = recall(SPEAKER_KEY) ?? "";
  speakerField.hidden = !canPickSpeaker;
  useMicrophone(micId, { now: false });

  function fill(select, devices, chosen, fallbackName) {
    const options = [new Option("Default", "")];
    devices.forEach((d, i) => {
      if (d.deviceId === "default" || d.deviceId === "communications" || !d.deviceId) return;
      options.push(new Option(d.label || `${fallbackName} ${i + 1}`, d.deviceId));
    });
    select.replaceChildren(...options);
    select.value = options.some((o) => o.value === chosen) ? chosen : "";
  }

  async function refreshDevices() {
    if (!navigator.mediaDevices?.enumerateDevices) {
      micSelect.disabled = true;
      speakerSelect.disabled = true;
      return;
    }
    try {
      const devices = await navigator.mediaDevices.enumerateDevices();
      fill(micSelect, devices.filter((d) => d.kind === "audioinput"), micId, "Microphone");
      fill(speakerSelect, devices.filter((d) => d.kind === "audiooutput"), speakerId, "Speaker");
    } catch {
      // Leave "Default" only.
    }
  }

  async function applySpeaker() {
    if (!canPickSpeaker) return;
    try {
      await audio.setSinkId(speakerId);
    } catch (err) {
      onError(new Error(`The speaker could not be changed${err?.message ? `: ${err.message}` : ""}.`));
    }
  }

  micSelect.addEventListener("change", () => {
    micId = micSelect.value;
    remember(MIC_KEY, micId);
    useMicrophone(micId, { now: true });
  });
  speakerSelect.addEventListener("change", () => {
    speakerId = speakerSelect.value;
    remember(SPEAKER_KEY, speakerId);
    applySpeaker();
  });
  navigator.mediaDevices?.addEventListener?.("devicechange", refreshDevices);
  refreshDevices();
  if (speakerId) applySpeaker();

  // Device names are only given after the microphone was allowed once.
  return { refreshDevices };
}

/** Opt-in notifications: the browser is asked only when the user presses the button. */
export function startNotifications({ onActivate }) {
  const button = $("enable-notifications");
  const state = $("notifications-state");
  const supported = "Notification" in window;
  let shown = null;

  function render() {
    if (!supported) {
      button.hidden = true;
      state.hidden = true;
      return;
    }
    const permission = Notification.permission;
    button.hidden = permission !== "default";
    state.hidden = permission === "default";
    state.textContent =
      permission === "granted"
        ? "Notifications are on: incoming calls and voicemail are announced while this tab is in the background."
        : "Notifications are blocked in this browser's site settings.";
  }

  button.addEventListener("click", async () => {
    try {
      await Notification.requestPermission();
    } catch {
      // Old callback-only form or refusal: render() shows the outcome.
    }
    render();
  });
  render();

  return {
    /** A one-off notice (a missed call, new voicemail), only while the tab is hidden. */
    notify(title, body, tag) {
      if (!supported || Notification.permission !== "granted" || document.visibilityState !== "hidden") return;
      try {
        const note = new Notification(title, { body, tag });
        note.onclick = () => {
          window.focus();
          $("mailbox")?.scrollIntoView();
          note.close();
        };
      } catch {
        // some browsers allow notifications only from a service worker
      }
    },
    /** incoming: {id, from, fromName} or null; notify only while the tab is hidden. */
    incoming(incoming, words) {
      if (!incoming) {
        shown?.close();
        shown = null;
        return;
      }
      if (!supported || Notification.permission !== "granted" || document.visibilityState !== "hidden") return;
      if (shown?.tag === `call-${incoming.id}`) return;
      shown?.close();
      try {
        shown = new Notification("Incoming call", { body: words, tag: `call-${incoming.id}`, requireInteraction: true });
        shown.onclick = () => {
          window.focus();
          onActivate();
          shown?.close();
        };
      } catch {
        shown = null; // some browsers allow notifications only from a service worker
      }
    },
  };
}
