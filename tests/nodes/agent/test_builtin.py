"""The built-in demo containers, through a real agent."""
import importlib.util
import time

import pytest

from nodes.agent import builtin


def test_sleep_reports_progress_as_it_goes(agent):
    job_id = agent.submit(["sleep"], {"seconds": 1.5})
    seen = []
    while True:
        job = agent.result(job_id)
        seen.append(job["progress"])
        if job["status"] != "running":
            break
        time.sleep(0.05)
    assert job["status"] == "success" and job["result"]["output"] == {"slept": 1.5}
    partial = [p for p in seen if 0 < p < 1]
    assert len(set(partial)) >= 3, f"progress should climb while the job runs, saw {seen}"
    assert partial == sorted(partial)
    assert seen[-1] == 1.0


def test_echo_returns_its_input(agent):
    data = {"nested": {"list": [1, 2.5, "three", None, True]}, "unicode": "héllo ✓"}
    assert agent.wait(agent.submit(["echo"], data))["result"]["output"] == data


def test_tokens_returns_the_whole_text_when_not_streamed(agent):
    job = agent.wait(agent.submit(["tokens"], {"prompt": "  spaced   out words "}))
    assert job["result"]["output"] == {"text": "spaced out words", "tokens": 3}


@pytest.mark.parametrize(
    "function,data,message",
    [
        (builtin.sleep, {"seconds": -1}, "seconds must be a number from 0 to 3600"),
        (builtin.sleep, {"seconds": "1"}, "seconds must be a number from 0 to 3600"),
        (builtin.sleep, {"seconds": True}, "seconds must be a number from 0 to 3600"),
        (builtin.tokens, {}, 'data must carry the text as "text", "prompt" or "input"'),
        (builtin.tokens, {"text": "x", "delay": 60}, "delay must be a number of seconds from 0 to 10"),
    ],
)
def test_bad_input_to_a_builtin_is_a_clear_error(function, data, message):
    with pytest.raises(ValueError, match=message):
        function(data, job=None)


def test_bad_input_fails_the_job_not_the_worker(agent):
    job = agent.wait(agent.submit(["sleep"], {"seconds": "forever"}))
    assert job["result"] == {"container": "sleep", "error": "seconds must be a number from 0 to 3600"}
    assert agent.wait(agent.submit(["sleep"], {"seconds": 0}))["status"] == "success"


def test_the_agent_names_the_models_it_cannot_run_and_why(monkeypatch):
    from types import SimpleNamespace

    from nodes.agent.config import builtin_containers
    from nodes.agent.server import AgentState

    state = SimpleNamespace(config=SimpleNamespace(containers=builtin_containers()))
    monkeypatch.setitem(builtin.READINESS, "nodes.agent.builtin:embed", lambda: "not installed here")
    assert AgentState.unavailable_models(state) == {"all-MiniLM-L6-v2": "not installed here"}
    monkeypatch.setitem(builtin.READINESS, "nodes.agent.builtin:embed", lambda: None)
    assert AgentState.unavailable_models(state) == {}
    assert (builtin.embed_missing() is None) == all(
        importlib.util.find_spec(m) for m in ("sentence_transformers", builtin.EMBED_MODEL_PACKAGE))
