"""Container i's output is container i+1's input; the first failure stops the chain."""
import json


def test_each_output_feeds_the_next_container(agent):
    job = agent.wait(agent.submit(["upper", "suffix", "suffix"], {"text": "abc"}), intermediate=True)
    assert job["status"] == "success"
    assert job["result"] == {"container": "suffix", "output": {"text": "ABC!!"}}
    assert job["intermediate_results"] == [
        {"container": "upper", "output": {"text": "ABC"}},
        {"container": "suffix", "output": {"text": "ABC!"}},
    ]


def test_the_first_failure_stops_the_chain_with_a_container_error(agent):
    job = agent.wait(agent.submit(["upper", "refuse", "suffix"], {"text": "abc"}), intermediate=True)
    assert job["status"] == "failed"
    assert job["result"] == {"container": "refuse", "error": "this container refuses every job"}
    # what ran before the failure is kept; what comes after it never ran
    assert job["intermediate_results"] == [{"container": "upper", "output": {"text": "ABC"}}]


def test_a_chain_can_mix_worker_and_command_containers(agent):
    job = agent.wait(agent.submit(["upper", "wordcount"], {"text": "three little words"}))
    assert job["result"] == {"container": "wordcount", "output": {"words": 3}}


def test_a_streamed_chain_streams_the_last_container(agent):
    response = agent.post("/api/jobs/stream", {"containers": ["upper", "suffix"], "data": {"text": "x"}}, stream=True)
    body = response.content
    job_id, _, rest = body.decode().partition("\n")
    assert rest == '{"text":"X!"}'
    assert agent.wait(job_id)["result"]["output"] == {"text": "X!"}


def test_a_stream_client_that_leaves_early_does_not_stop_the_job(agent):
    import socket

    body = json.dumps({"containers": ["tokens"], "data": {"text": "a b c d e f g h", "delay": 0.05}}).encode()
    with socket.create_connection(("127.0.0.1", agent.port)) as sock:
        sock.sendall(
            b"POST /api/jobs/stream HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode() + body
        )
        head = b""
        while b"\r\n\r\n" not in head or head.count(b"\n") < 8:
            head += sock.recv(4096)
    # the client is gone after the first chunks; the job finishes and keeps its result
    job_id = head.split(b"\r\n\r\n", 1)[1].split(b"\r\n")[1].decode().strip()
    job = agent.wait(job_id)
    assert job["status"] == "success"
    assert job["result"]["output"] == {"text": "a b c d e f g h", "tokens": 8}


def test_the_events_stream_format_sends_json_lines_and_the_final_result(agent):
    response = agent.post(
        "/api/jobs/stream", {"containers": ["tokens"], "data": {"text": "héllo wörld"}},
        headers={"X-Stream-Format": "events"}, stream=True,
    )
    assert response.headers["Content-Type"].startswith("application/x-ndjson")
    job_id, *lines = response.content.decode().strip().split("\n")
    events = [json.loads(line) for line in lines]
    assert "".join(e["output"] for e in events if "output" in e) == "héllo wörld"
    final = events[-1]["result"]
    assert final["id"] == job_id and final["status"] == "success"
    assert final["result"]["output"] == {"text": "héllo wörld", "tokens": 2}
    assert final["receipt"]["body"]["job_id"] == job_id
