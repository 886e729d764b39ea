"""Private inference from the command line: seal here, run on a node, open here.

    python -m privacy.cli run --model echo "my secret prompt"
    python -m privacy.cli nodes

Configure with --url / --api-key or MARKETPLACE_URL / MARKETPLACE_API_KEY. Node
identity keys are pinned on first use in --pin-file (default
~/.config/b3iq/known_nodes.json); a node whose identity changes is refused.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from privacy.client import KeyPins, PrivateInferenceClient, PrivateInferenceError

DEFAULT_PINS = "~/.config/b3iq/known_nodes.json"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m privacy.cli", description=__doc__.split("\n")[0])
    parser.add_argument("--url", default=os.environ.get("MARKETPLACE_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--api-key", default=os.environ.get("MARKETPLACE_API_KEY"))
    parser.add_argument("--pin-file", default=os.environ.get("B3IQ_PIN_FILE", DEFAULT_PINS))
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("nodes", help="list the nodes whose transport keys verify")
    run = commands.add_parser("run", help="seal a prompt to a node, run it, print the opened result")
    run.add_argument("prompt", help="the input: text, or JSON with --json")
    run.add_argument("--model", required=True)
    run.add_argument("--node", help="a node id (default: the cheapest verified node serving the model)")
    run.add_argument("--json", action="store_true", help="the prompt is JSON")
    run.add_argument("--params", help="model parameters, a JSON object")
    run.add_argument("--max-price-wei", type=int)
    run.add_argument("--ttl", type=int, default=300, help="seconds until the sealed request expires")
    run.add_argument("--timeout", type=float, default=300, help="seconds to wait for the result")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not args.api_key:
        print("error: give --api-key or set MARKETPLACE_API_KEY", file=sys.stderr)
        return 2
    client = PrivateInferenceClient(args.url, args.api_key, pins=KeyPins.at(args.pin_file))
    try:
        if args.command == "nodes":
            for offer in client.nodes():
                prices = ", ".join(f"{model} {price} wei" for model, price in sorted(offer.models.items()))
                print(f"{offer.node_id}  key {offer.current_key()['key_id']}  {prices}")
            return 0
        try:
            prompt = json.loads(args.prompt) if args.json else args.prompt
            params = json.loads(args.params) if args.params else None
        except ValueError as exc:
            print(f"error: not JSON: {exc}", file=sys.stderr)
            return 2
        offer = client.choose(model_id=args.model, node_id=args.node)
        job = client.submit(offer, model_id=args.model, input=prompt, params=params, ttl_seconds=args.ttl,
                            max_price_wei=args.max_price_wei)
        print(f"job {job.job_id} sealed to {offer.node_id} (key {job.request_envelope['key_id']})", file=sys.stderr)
        opened = client.result(job, timeout=args.timeout)
    except PrivateInferenceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if "error" in opened:
        print(f"error from the node: {opened['error']}", file=sys.stderr)
        return 1
    output = opened.get("output")
    print(output if isinstance(output, str) else json.dumps(output, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
