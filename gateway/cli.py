"""``python -m gateway``: read the configuration, start the service, stop it on a signal."""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import getpass
import logging
import signal
import sys
from pathlib import Path

from aiohttp import web

from . import config as configuration, healthcheck, logs
from .app import SERVICES, create_app
from .apitokens import hash_token, new_token
from .front import Front
from .hostaddr import own_addresses
from .passwords import hash_password
from .tlscert import server_context

log = logging.getLogger("gateway")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="webrtc-sip-gateway",
        description="WebRTC-to-SIP gateway: a web dial pad bridged to SIP calls (Opus <-> G.711).",
    )
    parser.add_argument("-c", "--config", type=Path, help="TOML configuration file (default: built-in defaults)")
    parser.add_argument("--http-host", help="address for the web page and WebSocket (default 0.0.0.0)")
    parser.add_argument("--http-port", type=int, help="port for the web page (default 8443; 0 picks a free one)")
    parser.add_argument("--no-tls", action="store_true", help="serve plain HTTP (browsers then allow the microphone on localhost only)")
    parser.add_argument("--sip-host", help="address for SIP and RTP (default 0.0.0.0)")
    parser.add_argument("--sip-port", type=int, help="SIP port, UDP and TCP (default 5060; 0 picks a free one)")
    parser.add_argument("--rtp-port", type=int, help="first RTP port (default 4000)")
    parser.add_argument("--state-dir", type=Path, help="where the self-signed certificate is kept (default ./.gateway)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument(
        "--log-format", default="plain", choices=logs.FORMATS,
        help="plain text lines (default), or one JSON object a line with the call id on a call's lines",
    )
    parser.add_argument("--hash-password", action="store_true", help="read a password and print its hash for [users]")
    parser.add_argument(
        "--new-api-token", metavar="NAME", help="make a REST API token for operator NAME: print it, and its [[api.tokens]] entry"
    )
    parser.add_argument(
        "--check-health", action="store_true",
        help="ask the gateway running here with this configuration for /health: exit 0 if it serves, else 1",
    )
    parser.add_argument(
        "--write-front", type=Path, metavar="DIR",
        help="write the Kamailio front's configuration for this gateway into DIR and exit (to run it yourself)",
    )
    return parser.parse_args(argv)


def load_config(args: argparse.Namespace) -> configuration.Config:
    config = configuration.load(args.config)
    overrides = {
        ("http", "listen"): args.http_host, ("http", "port"): args.http_port,
        ("sip", "listen"): args.sip_host, ("sip", "port"): args.sip_port, ("sip", "rtp_port"): args.rtp_port,
    }
    for (section, key), value in overrides.items():
        if value is not None:
            setattr(getattr(config, section), key, value)
    if args.no_tls:
        config.http.tls = False
    if args.state_dir is not None:
        config.state_dir = args.state_dir
    configuration.validate(config, "command line")
    return config


async def serve(config: configuration.Config) -> None:
    """Run until SIGINT or SIGTERM; then calls get their BYE and the process exits."""
    app = create_app(config)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    ssl_context = server_context(config.state_dir, own_addresses(loopback=False)) if config.http.tls else None
    site = web.TCPSite(runner, config.http.listen, config.http.port, ssl_context=ssl_context)
    await site.start()
    port = runner.addresses[0][1]
    scheme = "https" if ssl_context else "http"
    hosts = ["localhost", *own_addresses(loopback=False)] if config.http.listen in ("0.0.0.0", "::") else [config.http.listen]
    for host in hosts:
        _say(f"Web phone: {scheme}://{host}:{port}/")
    control = app[SERVICES].control
    assert control is not None
    if app[SERVICES].sip_tls:
        _say(f"SIP over TLS: {app[SERVICES].sip_tls}")
    _say(f"SIP: {control.sip_host} (UDP{' and TCP' if config.sip.tcp else ''}); try extensions 600 (echo) and 601 (tone)")
    for warning in config.plan.warnings:
        _say(f"warning: {warning}", logging.WARNING)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    _say("Shutting down: hanging up calls")
    await runner.cleanup()


def _say(text: str, level: int = logging.INFO) -> None:
    """A line for the operator: printed (errors to stderr), or a log record when the log is JSON, so every line is."""
    if logs.current_format() == "json":
        log.log(level, text)
    else:
        print(text, file=sys.stderr if level >= logging.ERROR else sys.stdout, flush=True)


def write_front(config: configuration.Config, directory: Path) -> int:
    if config.front.rpc_url:
        print(f"this gateway uses the front at {config.front.rpc_url}: write it from that front's configuration", file=sys.stderr)
        return 2
    front = Front(config)
    path = front.write(directory.resolve())
    print(f"Wrote {path} and {path.with_name('dispatcher.list')}; run: kamailio -DD -E -f {path}")
    print(
        f"Other gateways point at it with [front] rpc_url = \"{front.rpc_url}\", address = \"{front.address}\""
        f" and rpc_secret = \"{front.secret}\""
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.hash_password:
        password = getpass.getpass("Password: ") if sys.stdin.isatty() else sys.stdin.readline().rstrip("\n")
        print(hash_password(password))
        return 0
    if args.new_api_token:
        token = new_token()
        print(f"Token for {args.new_api_token} (give it to them; it is not stored anywhere): {token}")
        print(f'[[api.tokens]]\nname = "{args.new_api_token}"\nhash = "{hash_token(token)}"')
        return 0
    logs.configure(args.log_level.upper(), args.log_format)
    faulthandler.enable()  # a crash inside pjsua2 then names the Python frames of every thread
    try:
        config = load_config(args)
        if args.write_front:
            return write_front(config, args.write_front)
        if args.check_health:
            healthy, seen = healthcheck.check(config)
            print(seen)
            return 0 if healthy else 1
        asyncio.run(serve(config))
    except configuration.ConfigError as exc:
        _say(f"configuration error: {exc}", logging.ERROR)
        return 2
    except OSError as exc:
        _say(f"cannot start: {exc}", logging.ERROR)
        return 1
    return 0
