"""Real SIP peers for integration tests: sipp and baresip on loopback, with their logs kept.

Modules: net (free ports, this machine's address, waiting, process teardown),
sipp (UAS/UAC/malformed-request peers, raw UDP requests), baresip (a phone that
plays a WAV file into calls and records what it hears), netns (hosts on a
bridge, a host with two addresses), delaylink (a host behind a link with delay and jitter).
"""
