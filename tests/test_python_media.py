"""The core call tests again, on the Python media path (``[engines] media = "python"``).

The rest of the suite runs on the default path (``auto``: the native relay
where it can be used). Here ``gateway`` is overridden and the same tests are
collected again, so both paths are checked on every run, and so is the one a
gateway falls back to when the native relay or its libraries are missing.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from .gatewayprocess import GatewayProcess
from .test_browser import (  # noqa: F401 - collected again, on the Python path
    test_incoming_call_answered_both_ways_then_one_declined,
    test_page_calls_a_sip_phone_with_audio_both_ways_and_dtmf,
)
from .test_builtin_extensions import (  # noqa: F401
    test_echo_extension_returns_your_voice,
    test_tone_extension_plays_440_hz,
)
from .test_sip_peers import (  # noqa: F401
    test_dtmf_from_the_page_reaches_the_sip_phone,
    test_early_media_reaches_the_page_before_the_answer,
    test_page_calls_a_sip_phone_and_both_hear_each_other,
    test_page_that_vanishes_mid_call_sends_bye,
    test_sip_phone_calls_a_page_and_hangs_up,
    test_the_page_can_read_the_sip_legs_quality,
)
from .test_web_calls import (  # noqa: F401
    test_call_between_two_pages_carries_audio_both_ways,
    test_twenty_calls_in_a_row_leak_nothing,
)

PYTHON = '[engines]\nmedia = "python"\n'


@pytest.fixture
def gateway(start_gateway: Callable[..., GatewayProcess]) -> GatewayProcess:
    """Overrides conftest's: the gateway with its media in Python."""
    gateway = start_gateway(PYTHON)
    assert [engine["media"] for engine in gateway.health()["engines"]] == ["python"]
    return gateway
