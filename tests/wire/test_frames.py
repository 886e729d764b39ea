"""The node socket's frames: bounded before they are parsed, named by their attempt."""
import json

import pytest

from wire.bounded_json import MAX_DEPTH, nesting_depth_exceeds
from wire.frames import MARKET_TYPES, NODE_TYPES, FrameError, attempt_key, decode_frame


def test_depth_is_measured_on_brackets_outside_strings_only():
    assert nesting_depth_exceeds("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1))
    assert not nesting_depth_exceeds("[" * MAX_DEPTH + "]" * MAX_DEPTH)
    assert not nesting_depth_exceeds(json.dumps({"data": "[" * 10_000}))
    assert not nesting_depth_exceeds(json.dumps({"data": 'a "quoted" [' * 1000 + "\\"}))
    # an escaped backslash closes no string early, an escaped quote does not end one
    assert nesting_depth_exceeds('{"a": "\\\\"' + "[" * (MAX_DEPTH + 1))
    assert not nesting_depth_exceeds('{"a": "\\"' + "[" * (MAX_DEPTH + 1) + '"}')


def test_a_deep_or_foreign_frame_is_refused_before_the_parser_sees_it():
    with pytest.raises(FrameError, match="deeper"):
        decode_frame("[" * 300_000 + "]" * 300_000, NODE_TYPES)
    with pytest.raises(FrameError, match="not valid JSON"):
        decode_frame("{nope", NODE_TYPES)
    for unstorable in ('{"type": "result", "result": NaN}', '{"type": "result", "result": 1e400}',
                       '{"type": "result", "result": "\\ud800"}', '{"type": "result", "result": "\\u0000"}'):
        with pytest.raises(FrameError):
            decode_frame(unstorable, NODE_TYPES)
    with pytest.raises(FrameError, match="known type"):
        decode_frame(json.dumps({"type": "job"}), NODE_TYPES)  # a marketplace frame, sent by a node
    assert decode_frame(json.dumps({"type": "job", "job_id": "j"}), MARKET_TYPES)["job_id"] == "j"


@pytest.mark.parametrize("frame", [{"job_id": "", "attempt": 1}, {"job_id": "j", "attempt": 0},
                                   {"job_id": "j", "attempt": True}, {"job_id": "j" * 65, "attempt": 1},
                                   {"job_id": 5, "attempt": 1}, {"attempt": 1}])
def test_an_attempt_is_a_job_id_and_a_positive_number(frame):
    with pytest.raises(FrameError):
        attempt_key(frame)


def test_an_attempt_key():
    assert attempt_key({"job_id": "job_1", "attempt": 2}) == ("job_1", 2)
