"""One SIP dialog as pjsua2 sees it; runs on the SIP thread.

Requests that would make the gateway place a call by itself go to call
control or are refused: a REFER is carried out only when call control says
so (:mod:`gateway.siptransfer`), an INVITE with Replaces for this dialog
gets 403, and a 3xx redirect is never followed.  Only call control, on
behalf of a signed-in user, decides where the gateway calls.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import TYPE_CHECKING

import pjsua2 as pj

from . import engineapi as api, siptransfer
from .sdp import point_audio_at
from .sipapi import CallAudio, Disconnected, MediaReady, NativePort, Quality, Responded
from .sipport import BridgePort, tone_generator
from .sipthread import guarded

if TYPE_CHECKING:
    from .sipua import SipUserAgent

log = logging.getLogger(__name__)


def _address(text: str) -> tuple[str, int]:
    """pjsua2's ``host:port`` or ``[v6]:port`` as (host, port)."""
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def _rtcp_address(text: str) -> tuple[str, int] | None:
    """The far end's RTCP address as pjsua2 read it from the SDP; None when it has none."""
    address = _address(text) if ":" in text else None
    return address if address and address[1] else None


class SipCall(pj.Call):
    """One SIP dialog; reports its progress to the user agent."""

    def __init__(self, ua: SipUserAgent, account: pj.Account, call_id: str, pj_call_id: int = pj.PJSUA_INVALID_ID) -> None:
        super().__init__(account, pj_call_id)
        self.ua = ua
        self.account = account
        self.call_id = call_id
        self.audio: CallAudio | None = None
        self.app: str | None = None
        self.port: BridgePort | None = None
        self.tone: pj.ToneGenerator | None = None
        self.held = (False, False)
        self.native_media: MediaReady | None = None
        """What was last negotiated for a :class:`~gateway.sipapi.NativePort` call."""
        self.rx_packets = -1
        self.created = self.rx_changed = time.monotonic()
        self.responded = False
        """Whether the far end has answered an INVITE we sent (see :class:`~gateway.sipapi.Responded`)."""
        self.transfer: SipCall | None = None
        """The dialog a REFER we took made, while it has not taken this one's place."""
        self.transfer_of: SipCall | None = None
        """For that dialog: the one it is to take the place of."""

    @guarded
    def onCallState(self, prm: pj.OnCallStateParam) -> None:
        ci = self.getInfo()
        log.debug("SIP call %s: %s (%s)", self.call_id, ci.stateText, ci.lastStatusCode)
        if self.transfer_of is not None:
            siptransfer.new_party(self, ci)
        elif ci.state == pj.PJSIP_INV_STATE_DISCONNECTED and self.transfer is not None:
            siptransfer.old_party_gone(self, ci.lastStatusCode, ci.lastReason)
        elif ci.state == pj.PJSIP_INV_STATE_EARLY and ci.role == pj.PJSIP_ROLE_UAC:
            self.ua.emit(api.Progress(self.call_id, ci.lastStatusCode, self._audio_index(ci) is not None))
        elif ci.state == pj.PJSIP_INV_STATE_CONFIRMED:
            self.ua.emit(api.Answered(self.call_id))
        elif ci.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self._disconnected(ci.lastStatusCode, ci.lastReason)

    @guarded
    def onCallTsxState(self, prm: pj.OnCallTsxStateParam) -> None:
        """The first response of any kind to an INVITE we sent (100 Trying included) says the far end is there."""
        if self.responded or prm.e.type != pj.PJSIP_EVENT_TSX_STATE:
            return
        state = prm.e.body.tsxState
        if state.type == pj.PJSIP_EVENT_RX_MSG and state.tsx.role == pj.PJSIP_ROLE_UAC and state.tsx.method == "INVITE":
            self.responded = True
            self.ua.emit(Responded(self.call_id))

    def _disconnected(self, code: int, reason: str) -> None:
        self.ua.bury(self)
        self.ua.emit(Disconnected(self.call_id, code, reason))

    def callback_failed(self, *_: object) -> None:
        """A callback of this call raised: end the call rather than leave it half set up."""
        prm = pj.CallOpParam()
        prm.statusCode = 500
        try:
            self.hangup(prm)
        except pj.Error:
            self._disconnected(500, "Internal error in the gateway")  # pjsua has no dialog left to end

    @guarded
    def onCallTransferRequest(self, prm: pj.OnCallTransferRequestParam) -> None:
        siptransfer.asked(self, prm)

    @guarded
    def onCallTransferStatus(self, prm: pj.OnCallTransferStatusParam) -> None:
        siptransfer.status(self, prm)

    @guarded
    def onCallReplaceRequest(self, prm: pj.OnCallReplaceRequestParam) -> None:
        log.warning("call %s: INVITE with Replaces refused", self.call_id)
        prm.statusCode = 403
        prm.reason = "Replaces not accepted"
        self.ua.emit(api.SipRefused("replaces", 403))

    @guarded
    def onCallRedirected(self, prm: pj.OnCallRedirectedParam) -> int:
        log.info("call %s: redirect to %s not followed", self.call_id, prm.targetUri)
        return pj.PJSIP_REDIRECT_STOP

    @guarded
    def onCallSdpCreated(self, prm: pj.OnCallSdpCreatedParam) -> None:
        if isinstance(self.audio, NativePort):
            prm.sdp.wholeSdp = point_audio_at(prm.sdp.wholeSdp, self.audio.port)

    @guarded
    def onCallMediaState(self, prm: pj.OnCallMediaStateParam) -> None:
        self.media_changed(self.getInfo())

    def media_changed(self, ci: pj.CallInfo) -> None:
        """Connect the audio as negotiated; a dialog made by a REFER waits until it takes the call over."""
        if self.transfer_of is not None:
            return
        self._report_hold(ci)
        if isinstance(self.audio, NativePort):
            self._report_native_media(ci)
            return
        index = self._audio_index(ci)
        if index is None:
            return
        media = self.getAudioMedia(index)
        if self.app == "echo":
            media.startTransmit(media)
        elif self.app == "tone":
            self.tone = self.tone or tone_generator()
            self.tone.startTransmit(media)
        elif self.audio is not None:
            if self.port is None:
                self.port = self.ua.bridge_ports.lend(self.audio)
            media.startTransmit(self.port)
            self.port.startTransmit(media)
        if ci.state == pj.PJSIP_INV_STATE_EARLY and ci.role == pj.PJSIP_ROLE_UAC:
            self.ua.emit(api.Progress(self.call_id, 183, True))

    def _report_native_media(self, ci: pj.CallInfo) -> None:
        """What pjsua2 negotiated, for the native path: the far end's address, codec and direction."""
        index = next((i for i, m in enumerate(ci.media) if m.type == pj.PJMEDIA_TYPE_AUDIO), None)
        if index is None or ci.media[index].status in (pj.PJSUA_CALL_MEDIA_NONE, pj.PJSUA_CALL_MEDIA_ERROR):
            return
        direction = ci.media[index].dir
        try:
            info = self.getStreamInfo(index)
        except pj.Error:  # no stream while both sides hold (a=inactive): the last one, sending nothing
            if self.native_media is not None:
                self.ua.emit(dataclasses.replace(self.native_media, send=False, receive=False))
            return
        self.native_media = MediaReady(
            self.call_id, _address(info.remoteRtpAddress), info.txPt, info.audRxEventPt if info.audRxEventPt > 0 else None,
            bool(direction & pj.PJMEDIA_DIR_ENCODING), bool(direction & pj.PJMEDIA_DIR_DECODING),
            _rtcp_address(info.remoteRtcpAddress),
        )
        self.ua.emit(self.native_media)
        if ci.state == pj.PJSIP_INV_STATE_EARLY and ci.role == pj.PJSIP_ROLE_UAC:
            self.ua.emit(api.Progress(self.call_id, 183, True))

    def _report_hold(self, ci: pj.CallInfo) -> None:
        statuses = {media.status for media in ci.media if media.type == pj.PJMEDIA_TYPE_AUDIO}
        held = (pj.PJSUA_CALL_MEDIA_LOCAL_HOLD in statuses, pj.PJSUA_CALL_MEDIA_REMOTE_HOLD in statuses)
        if held != self.held:
            self.held = held
            self.ua.emit(api.HoldChanged(self.call_id, *held))

    @guarded
    def onDtmfDigit(self, prm: pj.OnDtmfDigitParam) -> None:
        self.ua.emit(api.DtmfReceived(self.call_id, prm.digit))

    def send_dtmf(self, digits: str) -> None:
        """RFC 4733 telephone-events when the far end negotiated them, SIP INFO otherwise."""
        index = self._audio_index(self.getInfo())
        prm = pj.CallSendDtmfParam()
        prm.digits = digits
        native = isinstance(self.audio, NativePort)  # pjsua2 sends no RTP for it, so no RFC 4733 either
        rfc4733 = not native and index is not None and self.getStreamInfo(index).audTxEventPt > 0
        prm.method = pj.PJSUA_DTMF_METHOD_RFC2833 if rfc4733 else pj.PJSUA_DTMF_METHOD_SIP_INFO
        self.sendDtmf(prm)

    def quality(self) -> Quality:
        """The SIP leg as RTCP sees it: codec, jitter (ms), loss (%), round trip (ms); None before any sample."""
        index = self._audio_index(self.getInfo())
        if index is None:
            return ("", None, None, None)
        info, rtcp = self.getStreamInfo(index), self.getStreamStat(index).rtcp
        received = rtcp.rxStat.pkt + rtcp.rxStat.loss
        jitter, rtt = rtcp.rxStat.jitterUsec, rtcp.rttUsec
        return (
            f"{info.codecName}/{info.codecClockRate}",
            jitter.mean / 1000 if jitter.n else None,
            100 * rtcp.rxStat.loss / received if received else None,
            rtt.mean / 1000 if rtt.n else None,
        )

    def received_packets(self) -> int | None:
        """RTP packets received so far, or None while no audio stream runs, the far end holds,
        or pjsua2 does not carry the audio (the native path watches its own)."""
        if isinstance(self.audio, NativePort):
            return None
        try:
            ci = self.getInfo()
        except pj.Error:
            return None  # the dialog is ending; its DISCONNECTED is on the way
        if ci.state != pj.PJSIP_INV_STATE_CONFIRMED:
            return None
        index = self._audio_index(ci)
        if index is None:
            return None
        return self.getStreamStat(index).rtcp.rxStat.pkt

    @staticmethod
    def _audio_index(ci: pj.CallInfo) -> int | None:
        for index, media in enumerate(ci.media):
            if media.type == pj.PJMEDIA_TYPE_AUDIO and media.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
                return index
        return None

    def release_port(self) -> BridgePort | None:
        """Stop this dialog's audio going to and from its bridge port, and hand the port over."""
        port, self.port = self.port, None
        index = self._audio_index(self.getInfo())
        if port is not None and index is not None:
            media = self.getAudioMedia(index)
            try:
                media.stopTransmit(port)
                port.stopTransmit(media)
            except pj.Error as exc:
                log.debug("call %s: bridge port not disconnected: %s", self.call_id, exc.reason)
        return port

    def detach_media(self) -> list[pj.AudioMedia]:
        """Give the bridge port back, silence the tone and hand it over for deletion."""
        if self.port is not None:
            self.ua.bridge_ports.give_back(self.port)
        media: list[pj.AudioMedia] = []
        if self.tone is not None:
            self.tone.stop()
            media.append(self.tone)
        self.port = self.tone = None
        return media


