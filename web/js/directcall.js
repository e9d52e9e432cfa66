// Direct calls, browser to browser with another web user's page (docs/protocol.md):
// the answering page keeps only Opus in its SDP answer, so the call is Opus end
// to end and never falls back to G.711 between two browsers.

const OPUS = /^audio\/opus$/i;

/** Before createAnswer: offer the other page only Opus on `pc`'s audio (the browser's own choice when it cannot). */
export function answerWithOpusOnly(pc) {
  const codecs = RTCRtpReceiver.getCapabilities?.("audio")?.codecs ?? [];
  const opus = codecs.filter((codec) => OPUS.test(codec.mimeType));
  if (!opus.length) return;
  for (const transceiver of pc.getTransceivers()) {
    if (transceiver.receiver.track?.kind === "audio" && transceiver.setCodecPreferences) transceiver.setCodecPreferences(opus);
  }
}
