"""WebRTC-to-SIP gateway: call control (aiohttp) and media engines (pjsua2 + aiortc)."""

__version__ = "0.1.0"
