"""Run a fake provider in its own process.

    python -m messaging.fakes webhook --port 8701 --secret S [--stats-file F] [--no-dedupe]
    python -m messaging.fakes sms --port 8702 --app-key K --app-secret S [--receipt-url U] [--auto-receipt]

Prints one JSON line {"url": …, "base_url": …, "pid": …} once listening. GET /_stats (add ?keys=1 for per-key
counts) answers the counts; POST /_control steers it ({"action": "fail_next", "count": 3, "status": 500}). On
SIGTERM or SIGINT the full counts are written to --stats-file as JSON and the process exits.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from messaging.fakes.base import FakeHttpServer
from messaging.fakes.sms import FakeSmsGateway
from messaging.fakes.webhook import FakeWebhookReceiver


def build(argv: list[str]) -> tuple[FakeHttpServer, argparse.Namespace]:
    parser = argparse.ArgumentParser(prog="python -m messaging.fakes")
    kinds = parser.add_subparsers(dest="kind", required=True)
    for name in ("webhook", "sms"):
        sub = kinds.add_parser(name)
        sub.add_argument("--host", default="127.0.0.1")
        sub.add_argument("--port", type=int, default=0)
        sub.add_argument("--stats-file", default="")
        sub.add_argument("--no-dedupe", action="store_true", help="act on every request, to show duplicates")
        sub.add_argument("--max-skew", type=float, default=300.0)
        if name == "webhook":
            sub.add_argument("--secret", required=True)
        else:
            sub.add_argument("--app-key", required=True)
            sub.add_argument("--app-secret", required=True)
            sub.add_argument("--receipt-url", default="")
            sub.add_argument("--auto-receipt", action="store_true")
    args = parser.parse_args(argv)
    options: dict[str, Any] = {"host": args.host, "port": args.port, "dedupe": not args.no_dedupe}
    options["max_skew"] = args.max_skew
    if args.kind == "webhook":
        return FakeWebhookReceiver(secret=args.secret, **options), args
    server = FakeSmsGateway(
        app_key=args.app_key,
        app_secret=args.app_secret,
        receipt_url=args.receipt_url,
        auto_receipt=args.auto_receipt,
        **options,
    )
    return server, args


def main(argv: list[str]) -> None:
    server, args = build(argv)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    server.start()
    print(json.dumps({"url": server.url, "base_url": server.base_url, "pid": os.getpid()}), flush=True)
    done.wait()
    server.stop()
    if args.stats_file:
        Path(args.stats_file).write_text(json.dumps(server.stats(keys=True)))


if __name__ == "__main__":
    main(sys.argv[1:])
