"""``amp-profile-emulator`` / ``python -m amp_profile_magic.emulator``: serve the emulator until signalled.

On start it prints exactly two lines, ``AMPLITUDE_PROFILE_URL=...`` and ``AMPLITUDE_SECRET_KEY=...``, and flushes
them, so a benchmark can parse them and a shell can source them (``amp-profile-emulator > emulator.env &``, then
``set -a; . ./emulator.env; set +a``); it then serves until SIGINT or SIGTERM and exits 0.
"""

from __future__ import annotations

import argparse
import ipaddress
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from ._faults import Faults
from ._server import Emulator


def build_parser() -> argparse.ArgumentParser:
    """The command line: where to listen, what data to serve and which faults to inject."""
    parser = argparse.ArgumentParser(
        prog="amp-profile-emulator",
        description="Serve a local emulator of Amplitude's User Profile API until SIGINT/SIGTERM.",
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="loopback address to bind: 127.0.0.1, ::1 or localhost (default: %(default)s)",
    )
    parser.add_argument("--port", type=int, default=0, help="port to bind; 0 picks a free one (default)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic data and faults")
    parser.add_argument("--users", type=int, default=5000, help="number of synthetic users")
    parser.add_argument("--rec-items", type=int, default=10, help="items per synthetic recommendation")
    parser.add_argument("--api-key", default=None, help="secret key to require (default: a random one)")
    parser.add_argument("--rate-limit", type=int, default=None, metavar="N", help="requests per minute")
    parser.add_argument(
        "--rate-limit-window",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="rolling window the rate limit is counted over, same rate (default: %(default)g)",
    )
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every request")
    parser.add_argument("--jitter", type=float, default=0.0, help="up to this many more seconds, uniform")
    parser.add_argument("--error-rate", type=float, default=0.0, help="fraction answered --error-status")
    parser.add_argument("--error-status", type=int, default=503, help="5xx status of errors (default 503)")
    parser.add_argument("--drop-rate", type=float, default=0.0, help="fraction dropped mid-response")
    parser.add_argument("--malformed-rate", type=float, default=0.0, help="fraction answered with junk")
    parser.add_argument("--throttle-rate", type=float, default=0.0, help="fraction answered 429")
    parser.add_argument("--slow-rate", type=float, default=0.0, help="fraction delayed by --slow-seconds")
    parser.add_argument("--slow-seconds", type=float, default=5.0, help="delay of slow responses")
    parser.add_argument(
        "--plain-http", action="store_true", help="answer every request 301 to https, like the real API"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the emulator until SIGINT or SIGTERM; return the exit status (0 after a clean stop)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not _loopback(args.host):
        # Plain HTTP off this machine: the client would refuse to send it the key, and others could reach it.
        parser.error(f"--host {args.host}: the emulator serves plain HTTP on this machine only (127.0.0.1, ::1)")
    try:
        faults = Faults(
            latency=args.latency,
            jitter=args.jitter,
            error_rate=args.error_rate,
            error_status=args.error_status,
            drop_rate=args.drop_rate,
            malformed_rate=args.malformed_rate,
            throttle_rate=args.throttle_rate,
            slow_rate=args.slow_rate,
            slow_seconds=args.slow_seconds,
        )
        emulator = Emulator(
            seed=args.seed,
            users=args.users,
            rec_items=args.rec_items,
            api_key=args.api_key,
            rate_limit_per_minute=args.rate_limit,
            rate_limit_window=args.rate_limit_window,
            faults=faults,
            plain_http_redirect=args.plain_http,
            host=args.host,
            port=args.port,
        )
    except (TypeError, ValueError) as exc:
        parser.error(str(exc))  # exits 2 with usage

    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    # The server runs in a thread, so uvicorn installs no handlers; these turn both signals into
    # a clean stop and exit 0 (uvicorn's own handling would re-raise SIGTERM after shutting down).
    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        emulator.start()
    except (OSError, OverflowError) as exc:  # a port in use or out of range, an address this machine lacks
        parser.exit(1, f"{parser.prog}: error: cannot listen on {args.host}:{args.port}: {exc}\n")
    try:
        sys.stdout.write(f"AMPLITUDE_PROFILE_URL={emulator.url}\nAMPLITUDE_SECRET_KEY={emulator.api_key}\n")
        sys.stdout.flush()
        # A timed wait, so the main thread regularly returns to the interpreter to run handlers.
        while not stop.wait(0.5):
            pass
    finally:
        emulator.stop()
    return 0


def _loopback(host: str) -> bool:
    # The package's is_loopback, kept here too: the emulator imports nothing from the package it stands beside.
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


if __name__ == "__main__":
    sys.exit(main())
