"""baresip (1.0.0) as a real SIP phone for integration tests, driven over ctrl_tcp.

Each phone gets a fresh config directory, SIP on 127.0.0.1 (or the `ip` given) on a
kernel-picked port, G.711 only, auto-answer, no sound card: it plays a WAV file into
every call (aufile) and records what it hears (sndfile's decode-side dump).

aufile plays the file once per call and then sends no RTP at all, so give it a WAV
longer than any call (20 s of tone at 8 kHz is 320 kB).

    with Baresip(tmp_path, source_wav) as phone:
        phone.dial(gateway_uri)
        phone.wait_event("CALL_ESTABLISHED")
        ...
        phone.hangup()
        phone.wait_event("CALL_CLOSED")
        samples, rate = read_wav(phone.recording())
"""

from __future__ import annotations

import itertools
import json
import re
import socket
import subprocess
import threading
import time
import wave
from pathlib import Path
from types import TracebackType
from typing import Any

from .net import LOOPBACK, free_port, free_tcp_port, stop_process, unique_name, wait_for

BARESIP = "baresip"
MODULE_PATH = Path("/usr/lib/baresip/modules")
SAMPLE_RATE = 8000  # G.711; aufile refuses a file whose rate differs from ausrc_srate

# One "key value" per line. sip_listen makes baresip bind UDP and TCP on the port and
# TLS on port + 1; net_interface takes an interface name or an IP address and sets
# the address put in SDP. Modules: g711 (PCMU/PCMA), aufile (WAV source; 1.0.0 has no
# aufile player), sndfile (filter dumping each call's audio to snd_path as
# dump-<time>-enc.wav / -dec.wav), account (reads the accounts file), menu (dial,
# hangup and auto-answer), ctrl_tcp (netstring JSON commands and events). No audio
# player is needed: 1.0.0 decodes and runs filters on receive.
_CONFIG = """\
poll_method epoll
sip_listen {ip}:{sip_port}
net_interface {ip}
call_local_timeout 120
call_max_calls 4
audio_source aufile,{source}
ausrc_srate {rate}
ausrc_channels 1
auplay_srate {rate}
auplay_channels 1
module_path {module_path}
module g711.so
module aufile.so
module sndfile.so
module_tmp account.so
module_app menu.so
module_app ctrl_tcp.so
ctrl_tcp_listen {ip}:{ctrl_port}
snd_path {recordings}
statmode_default off
"""
_ACCOUNT = "<sip:{user}@{ip}:{sip_port}>;regint=0;answermode=auto;audio_codecs=PCMU,PCMA{mediaenc}\n"
_SRTP = "module srtp.so\n"
"""With `mediaenc`: SDES SRTP (RFC 4568), e.g. "srtp-mand" (RTP/SAVP, required) or "srtp" (offered)."""


class BaresipError(RuntimeError):
    """baresip refused a command or did not start."""


class Baresip:
    """One baresip process with its own config directory, ports and control connection."""

    def __init__(
        self,
        workdir: Path,
        source_wav: Path,
        *,
        user: str = "bob",
        ip: str = LOOPBACK,
        lifetime_s: int = 120,
        mediaenc: str = "",
    ) -> None:
        with wave.open(str(source_wav), "rb") as src:
            shape = (src.getframerate(), src.getnchannels(), src.getsampwidth())
        if shape != (SAMPLE_RATE, 1, 2):
            raise ValueError(f"{source_wav}: baresip here plays 8000 Hz mono 16-bit WAV, not {shape}")
        self.source_wav = Path(source_wav).resolve()
        self.user, self.ip, self.lifetime_s, self.mediaenc = user, ip, lifetime_s, mediaenc
        self.dir = Path(workdir) / unique_name(Path(workdir), f"baresip-{user}")
        self.dir.mkdir(parents=True)
        self.recordings_dir = self.dir / "recordings"
        self.log_path = self.dir / "baresip.log"
        self.sip_port = self.ctrl_port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._reader: threading.Thread | None = None
        self._cond = threading.Condition()
        self._events: list[dict[str, Any]] = []
        self._responses: dict[str, dict[str, Any]] = {}
        self._returned: set[int] = set()  # indices of events that wait_event returned
        self._tokens = itertools.count(1)

    @property
    def uri(self) -> str:
        """SIP URI that reaches this phone."""
        return f"sip:{self.user}@{self.ip}:{self.sip_port}"

    def start(self, ready_timeout: float = 10.0, attempts: int = 3) -> Baresip:
        """Launch baresip and connect to ctrl_tcp; retried if a port was taken meanwhile."""
        self.recordings_dir.mkdir(parents=True, exist_ok=True)
        for _ in range(attempts):
            if self._launch(ready_timeout):
                self._reader = threading.Thread(target=self._read, name=f"baresip-{self.user}", daemon=True)
                self._reader.start()
                return self
        raise BaresipError(f"baresip found its ports taken {attempts} times; see {self.log_path}")

    def _launch(self, ready_timeout: float) -> bool:
        """Run baresip on fresh ports: True once ctrl_tcp accepts, False if a port was taken."""
        # baresip binds UDP+TCP on the SIP port and TLS on the next one.
        self.sip_port, self.ctrl_port = free_port(udp=True, tcp=True, block=2), free_tcp_port()
        fields = dict(
            ip=self.ip, sip_port=self.sip_port, ctrl_port=self.ctrl_port, user=self.user,
            source=self.source_wav, rate=SAMPLE_RATE, module_path=MODULE_PATH, recordings=self.recordings_dir,
            mediaenc=f";mediaenc={self.mediaenc}" if self.mediaenc else "",
        )
        (self.dir / "config").write_text(_CONFIG.format(**fields) + (_SRTP if self.mediaenc else ""))
        (self.dir / "accounts").write_text(_ACCOUNT.format(**fields))
        with open(self.log_path, "ab") as log:
            self._process = process = subprocess.Popen(
                [BARESIP, "-f", str(self.dir), "-v", "-s", "-t", str(self.lifetime_s)],
                cwd=self.dir, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + ready_timeout
        while process.poll() is None:
            try:
                self._sock = socket.create_connection((self.ip, self.ctrl_port), timeout=1.0)
                return True
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise BaresipError(f"baresip did not open ctrl_tcp; see {self.log_path}") from None
                time.sleep(0.05)
        if b"Address already in use" in self.log_path.read_bytes():
            return False
        raise BaresipError(f"baresip exited at start; see {self.log_path}")

    def _read(self) -> None:
        """Reader thread: split ctrl_tcp's netstrings into events and command responses."""
        sock = self._sock
        assert sock is not None
        sock.settimeout(None)
        buffer = b""
        while chunk := _recv(sock):
            buffer += chunk
            while (colon := buffer.find(b":")) >= 0:
                end = colon + 1 + int(buffer[:colon])
                if len(buffer) <= end:  # the trailing "," has not arrived yet
                    break
                message = json.loads(buffer[colon + 1 : end])
                buffer = buffer[end + 1 :]
                with self._cond:
                    if message.get("event"):
                        self._events.append(message)
                    elif message.get("response"):
                        self._responses[message.get("token", "")] = message
                    self._cond.notify_all()

    def command(self, name: str, params: str = "", timeout: float = 5.0) -> str:
        """Run a baresip command (as typed in its menu, e.g. "dial", "hangup"); its output."""
        if self._sock is None:
            raise BaresipError("baresip is not running")
        token = str(next(self._tokens))
        body = json.dumps({"command": name, "params": params, "token": token}).encode()
        self._sock.sendall(b"%d:%s," % (len(body), body))
        with self._cond:
            if not self._cond.wait_for(lambda: token in self._responses, timeout):
                raise BaresipError(f"no answer to {name!r} within {timeout} s; see {self.log_path}")
            response = self._responses.pop(token)
        if not response.get("ok"):
            raise BaresipError(f"{name} {params}: {response.get('data')}")
        return str(response.get("data", ""))

    def dial(self, uri: str) -> None:
        """Call `uri`; follow it with wait_event("CALL_ESTABLISHED") or ("CALL_CLOSED")."""
        self.command("dial", uri)

    def hangup(self) -> None:
        """End (or cancel) the current call."""
        self.command("hangup")

    def wait_event(self, kind: str, timeout: float = 10.0) -> dict[str, Any]:
        """Oldest event of `kind` that no earlier call returned, as ctrl_tcp sent it.

        Kinds: CALL_RINGING, CALL_ESTABLISHED, CALL_RTPESTAB (first RTP packet
        received), CALL_CLOSED, among others; an auto-answered call gives no
        CALL_INCOMING. CALL_CLOSED's "param" is the reason: "486 Busy Here" (the
        final response to our INVITE), "Connection reset by user" (we hung up),
        "Connection reset by peer" (BYE received, or ICMP unreachable). Each event
        is returned once, whatever order the kinds arrive in.
        """
        with self._cond:
            if not self._cond.wait_for(lambda: self._find(kind) is not None, timeout):
                seen = [event["type"] for event in self._events]
                raise TimeoutError(f"no {kind} within {timeout} s (got {seen}); see {self.log_path}")
            index = self._find(kind)
            assert index is not None
            self._returned.add(index)
            return self._events[index]

    def _find(self, kind: str) -> int | None:
        fresh = (i for i in range(len(self._events)) if i not in self._returned)
        return next((i for i in fresh if self._events[i]["type"] == kind), None)

    @property
    def events(self) -> list[dict[str, Any]]:
        """Every event received so far."""
        with self._cond:
            return list(self._events)

    def received(self, method: str) -> list[str]:
        """Every `method` request this phone has received so far, whole, from its SIP trace (-s) in its log."""
        me = f"{self.ip}:{self.sip_port}"
        return [message for _, to, message in self._trace() if to == me and message.startswith(f"{method} ")]

    def audio_port(self) -> int:
        """The RTP port this phone offered or answered for audio, from the first SDP it sent."""
        me = f"{self.ip}:{self.sip_port}"
        for source, _, message in self._trace():
            if source == me and (m_line := re.search(r"^m=audio (\d+) ", message, re.M)):
                return int(m_line[1])
        raise BaresipError(f"no SDP sent yet; see {self.log_path}")

    def _trace(self) -> list[tuple[str, str, str]]:
        """(from, to, message) of every SIP message in its trace (-s), oldest first."""
        pattern = r"\x1b\[36;1m#\n\S+ (\S+) -> (\S+)\n(.*?)\x1b\[;m"
        return re.findall(pattern, self.log_path.read_text(errors="replace"), re.S)

    def recording(self, timeout: float = 5.0) -> Path:
        """WAV of what this phone heard in its latest call, once the call has ended.

        sndfile completes the WAV header only when the call's audio is torn down, a
        moment after CALL_CLOSED (until then the file is unreadable); this waits for
        that. Calls starting within the same second share one file name, so the later
        one overwrites the earlier.
        """

        def finished() -> Path | None:
            dumps = sorted(self.recordings_dir.glob("dump-*-dec.wav"))
            return dumps[-1] if dumps and _wav_frames(dumps[-1]) > 0 else None

        try:
            return wait_for(finished, timeout)
        except TimeoutError:
            raise FileNotFoundError(f"no finished recording in {self.recordings_dir}") from None

    def kill(self) -> None:
        """Vanish without a BYE (SIGKILL), as a phone that loses power or network."""
        if self._process is not None:
            self._process.kill()

    def stop(self) -> None:
        """Stop baresip (kill if it lingers) and the reader thread. Safe to call twice."""
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)  # wakes the reader thread
            except OSError:
                pass
            self._sock.close()
            self._sock = None
        if self._process is not None:
            stop_process(self._process)
        if self._reader is not None:
            self._reader.join(5)

    def __enter__(self) -> Baresip:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except OSError:  # closed by stop()
        return b""


def _wav_frames(path: Path) -> int:
    try:
        with wave.open(str(path), "rb") as wav:
            return wav.getnframes()
    except (EOFError, wave.Error):
        return 0
