"""Entry points for test containers: each misbehaves in one way a real container can."""
import os
import sys
import time


def upper(data, job):
    return {"text": str(data.get("text", "")).upper()}


def suffix(data, job):
    return {"text": str(data.get("text", "")) + "!"}


def refuse(data, job):
    raise ValueError("this container refuses every job")


def crash(data, job):
    print("about to crash", file=sys.stderr, flush=True)
    os._exit(3)


def hang(data, job):
    time.sleep(3600)


def chatty(data, job):
    print("a stray print must not corrupt the protocol")
    return {"ok": True}


def not_json(data, job):
    return {"value": object()}


def huge(data, job):
    return {"text": "x" * int(data["bytes"])}


def pid(data, job):
    return {"pid": os.getpid()}
