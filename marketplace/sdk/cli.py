"""The marketplace from the command line, on the SDK.

    python -m marketplace.sdk submit --model tokens --input '{"text": "a b c"}' --watch
    python -m marketplace.sdk watch JOB_ID
    python -m marketplace.sdk get JOB_ID | cancel JOB_ID | download JOB_ID [-o FILE]
    python -m marketplace.sdk history [--from 2026-11-01] [--to 2026-11-30]
    python -m marketplace.sdk balance | usage
    python -m marketplace.sdk private --model echo "a secret prompt"

Configure with --url / --api-key, or MARKETPLACE_URL / MARKETPLACE_API_KEY.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from marketplace.sdk.client import MarketplaceClient, MarketplaceError
from privacy.client import PrivateInferenceError

BAR_WIDTH = 24


def _json_or_text(raw: str):
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _print(value) -> None:
    print(json.dumps(value, indent=2))


def _progress(status: str, progress: int) -> None:
    filled = BAR_WIDTH * max(0, min(progress, 100)) // 100
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {progress:3d}% {status:<10}")
    sys.stderr.flush()


def watch(client: MarketplaceClient, job_id: str) -> dict:
    """Progress on stderr, the output on stdout as it comes; the final record."""
    status, progress, printed = "queued", 0, False
    for event in client.events(job_id):
        kind = event.get("type")
        if kind == "output":
            if not printed:
                sys.stderr.write("\n")
            sys.stdout.write(event["data"])
            sys.stdout.flush()
            printed = True
            continue
        status = event.get("status", status)
        progress = event.get("progress", progress)
        if not printed:
            _progress(status, progress)
    sys.stderr.write("\n")
    job = client.job(job_id)
    if printed:
        sys.stdout.write("\n")
    elif job["status"] == "completed":
        _print(job["result"])
    if job["status"] != "completed":
        sys.stderr.write(f"job {job_id} {job['status']}: {job.get('status_reason') or job.get('error') or ''}\n")
    return job


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m marketplace.sdk", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="the marketplace (default: MARKETPLACE_URL or http://127.0.0.1:8000)")
    parser.add_argument("--api-key", help="default: MARKETPLACE_API_KEY")
    commands = parser.add_subparsers(dest="command", required=True)

    submit = commands.add_parser("submit", help="submit a job")
    what = submit.add_mutually_exclusive_group(required=True)
    what.add_argument("--model")
    what.add_argument("--containers", help="a chain: comma-separated container ids")
    submit.add_argument("--input", required=True, help="JSON, or plain text")
    submit.add_argument("--priority", default="normal", choices=["low", "normal", "high", "urgent"])
    submit.add_argument("--timeout-seconds", type=int)
    submit.add_argument("--max-price-wei", type=int)
    submit.add_argument("--gpu-type")
    submit.add_argument("--gpu-count", type=int)
    submit.add_argument("--idempotency-key", help="default: a new one (retries reuse it)")
    submit.add_argument("--watch", action="store_true", help="follow it: progress bar and live output")

    for name, text in (("get", "a job's record"), ("watch", "follow a job live"), ("cancel", "cancel a job"),
                       ("bill", "a job's bill")):
        commands.add_parser(name, help=text).add_argument("job_id")
    download = commands.add_parser("download", help="a completed job's result")
    download.add_argument("job_id")
    download.add_argument("-o", "--output", help="file to write (default: the name the marketplace gives)")
    history = commands.add_parser("history", help="your jobs between two dates")
    history.add_argument("--from", dest="start")
    history.add_argument("--to", dest="end")
    commands.add_parser("balance", help="balance, reserved, available (wei)")
    usage = commands.add_parser("usage", help="spend per day")
    usage.add_argument("--from", dest="start")
    usage.add_argument("--to", dest="end")
    private = commands.add_parser("private", help="an end-to-end encrypted job (sealed and opened here)")
    private.add_argument("prompt")
    private.add_argument("--model", required=True)
    private.add_argument("--node")
    private.add_argument("--pin-file", default="~/.config/b3iq/known_nodes.json")
    return parser


def run(args, client: MarketplaceClient) -> int:
    if args.command == "submit":
        requirements = {k: v for k, v in (("gpu_type", args.gpu_type), ("gpu_count", args.gpu_count)) if v}
        job = client.submit(
            model=args.model, containers=args.containers.split(",") if args.containers else None,
            input=_json_or_text(args.input), priority=args.priority, timeout_seconds=args.timeout_seconds,
            max_price_wei=args.max_price_wei, requirements=requirements or None,
            idempotency_key=args.idempotency_key,
        )
        if not args.watch:
            _print(job)
            return 0
        sys.stderr.write(f"job {job['job_id']}, quoted {job['estimated_cost_wei']} wei\n")
        return 0 if watch(client, job["job_id"])["status"] == "completed" else 1
    if args.command == "watch":
        return 0 if watch(client, args.job_id)["status"] == "completed" else 1
    if args.command == "download":
        result = client.download(args.job_id)
        path = Path(args.output or result.filename)
        path.write_bytes(result.content)
        sys.stderr.write(f"wrote {path} ({len(result.content)} bytes)\n")
        return 0
    if args.command == "history":
        for job in client.history(start=args.start, end=args.end):
            print(f"{job['job_id']}  {job['status']:<10} {job['model'] or ','.join(job['containers'] or [])}  "
                  f"{job['created_at']}")
        return 0
    if args.command == "private":
        from privacy.client import KeyPins

        private = client.private(pins=KeyPins.at(args.pin_file))
        offer = private.choose(model_id=args.model, node_id=args.node)
        opened = private.result(private.submit(offer, model_id=args.model, input=args.prompt))
        if "error" in opened:
            sys.stderr.write(f"error from the node: {opened['error']}\n")
            return 1
        _print(opened["output"])
        return 0
    calls = {
        "get": lambda: client.job(args.job_id),
        "cancel": lambda: client.cancel(args.job_id),
        "bill": lambda: client.bill(args.job_id),
        "balance": client.account,
        "usage": lambda: client.usage(start=args.start, end=args.end),
    }
    _print(calls[args.command]())
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return run(args, MarketplaceClient(args.url, args.api_key))
    except (MarketplaceError, PrivateInferenceError) as error:
        sys.stderr.write(f"error: {error}\n")
        return 1
