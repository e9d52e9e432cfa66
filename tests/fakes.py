"""Stand-ins for call control's unit tests: an engine's link and a page, each keeping what it was sent."""

from __future__ import annotations


class FakeLink:
    """An engine link: the commands call control sent it."""

    def __init__(self) -> None:
        self.sent: list[object] = []

    def send(self, command: object) -> None:
        self.sent.append(command)


class FakePage:
    """A signed-in page's session: the messages call control sent it."""

    user: str | None = None
    source = "127.0.0.1"

    def __init__(self) -> None:
        self.messages: list[dict] = []

    def send(self, message: dict) -> None:
        self.messages.append(message)
