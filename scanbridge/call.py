"""``scanbridge call SERVICE OP [JSON]``: one request through the broker; prints the result.

    scanbridge call scanner sources
    scanbridge call buffer list '{"session": "SID"}'
    scanbridge call buffer get '{"session": "SID", "image": "IID"}' --out page.png
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from broker import config as configlib
from broker.protocol import Error
from common.commands import EXIT_USAGE, broker_client, command, fail


def build(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("service")
    parser.add_argument("op")
    parser.add_argument("json", nargs="?", help="the arguments as a JSON object")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds (30)")
    parser.add_argument("--idempotent", action="store_true",
                        help="the broker may retry it on another worker if one dies")
    parser.add_argument("--blob", action="append", default=[], metavar="FILE",
                        help="attach a file as a blob (repeatable)")
    parser.add_argument("--out", metavar="PATH",
                        help="write reply blobs here (PATH, PATH0...)")


@command("call", "send one request to a service and print the result", build)
def cmd_call(home: configlib.Home, opts: argparse.Namespace) -> int:
    try:
        args = json.loads(opts.json) if opts.json else {}
    except json.JSONDecodeError as exc:
        fail(f"the JSON argument is not valid: {exc}", EXIT_USAGE)
    if not isinstance(args, dict):
        fail("the JSON argument must be an object, like '{\"key\": 1}'", EXIT_USAGE)
    blobs = []
    for name in opts.blob:
        try:
            blobs.append(Path(name).read_bytes())
        except OSError as exc:
            fail(f"cannot read {name}: {exc.strerror}", EXIT_USAGE)
    with broker_client(home, "broker") as client:
        try:
            reply = client.request(opts.service, opts.op, args, blobs=blobs,
                                   timeout=opts.timeout, idempotent=opts.idempotent)
        except Error as exc:
            fail(f"{opts.service}.{opts.op} failed: {exc.code}: {exc.message}")
    print(json.dumps(reply.result, indent=2, default=str))
    for number, blob in enumerate(reply.blobs):
        if not opts.out:
            print(f"(reply blob {number}: {len(blob)} bytes; save with --out PREFIX)",
                  file=sys.stderr)
            continue
        target = Path(f"{opts.out}{number}" if len(reply.blobs) > 1 else opts.out)
        target.write_bytes(blob.buffer)
    return 0
