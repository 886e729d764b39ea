"""The Docker runtime runs real containers on a real engine, as Infernet does."""
import json
import time

import pytest

from tests.support.agent import free_port, start_agent

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def docker_client():
    import docker

    return docker.from_env()


@pytest.fixture(scope="module")
def image(docker_client):
    from tests.nodes.agent.docker_image.build import build_image

    return build_image(docker_client)


def _service(container_id, image, port, name, **extra):
    return {
        "id": container_id,
        "runtime": "docker",
        "image": image,
        "port": port,
        "command": ["/listener", "127.0.0.1", str(port), "/handler.sh"],
        "env": {"NAME": name},
        "timeout_seconds": 20,
        **extra,
    }


@pytest.fixture(scope="module")
def docker_agent(tmp_path_factory, image):
    ports = free_port(), free_port()
    config = {
        "containers": [
            _service("first", image, ports[0], "first"),
            _service("second", image, ports[1], "second", external=False),
        ]
    }
    agent = start_agent(tmp_path_factory.mktemp("docker-agent"), config)
    yield agent
    agent.stop()


def test_a_job_runs_in_a_real_container(docker_agent):
    job = docker_agent.wait(docker_agent.submit(["first"], {"prompt": "hello"}))
    assert job["status"] == "success", job
    assert job["result"] == {
        "container": "first",
        "output": {
            "by": "first",
            "request": {"source": 1, "destination": 1, "data": {"prompt": "hello"}, "requires_proof": False},
        },
    }


def test_info_shows_the_image(docker_agent, image):
    containers = {c["id"]: c for c in docker_agent.get("/info").json()["containers"]}
    assert containers["first"]["image"] == image
    assert containers["second"]["external"] is False


def test_a_two_container_chain_passes_output_along(docker_agent):
    job = docker_agent.wait(docker_agent.submit(["first", "second"], {"n": 7}), intermediate=True)
    assert job["status"] == "success", job
    first_output = job["intermediate_results"][0]["output"]
    assert first_output["by"] == "first" and first_output["request"]["data"] == {"n": 7}
    second_output = job["result"]["output"]
    assert second_output["by"] == "second"
    assert second_output["request"]["data"] == first_output


def test_an_error_status_from_the_container_fails_the_job(docker_agent):
    job = docker_agent.wait(docker_agent.submit(["first"], {"fail": True}))
    assert job["status"] == "failed"
    assert job["result"] == {"container": "first", "error": 'container answered HTTP 500: {"error":"model exploded"}'}


def test_a_container_that_dies_mid_job_fails_the_job_and_comes_back(docker_agent, docker_client):
    job = docker_agent.wait(docker_agent.submit(["first"], {"die": True}))
    assert job["status"] == "failed"
    assert job["result"]["container"] == "first"
    assert "died mid-job" in job["result"]["error"]

    # Docker restarts the service; jobs succeed again once it listens
    deadline = time.monotonic() + 30
    while True:
        job = docker_agent.wait(docker_agent.submit(["first"], {"after": "restart"}))
        if job["status"] == "success":
            break
        assert time.monotonic() < deadline, f"the container never came back: {job}"
        time.sleep(0.2)
    assert job["result"]["output"]["request"]["data"] == {"after": "restart"}


def test_a_streamed_job_through_docker_returns_the_output(docker_agent):
    response = docker_agent.post("/api/jobs/stream", {"containers": ["first"], "data": {"s": 1}}, stream=True)
    job_id, _, body = response.content.decode().partition("\n")
    streamed = json.loads(body)
    assert streamed["by"] == "first" and streamed["request"]["destination"] == 2
    assert docker_agent.wait(job_id)["status"] == "success"


def test_stopping_the_agent_removes_its_containers(tmp_path, image, docker_client):
    port = free_port()
    agent = start_agent(tmp_path, {"containers": [_service("solo", image, port, "solo")]})
    name = f"infernet-agent-solo-{port}"
    try:
        assert docker_client.containers.get(name).status == "running"
        assert agent.wait(agent.submit(["solo"], {}))["status"] == "success"
    finally:
        agent.stop()
    assert docker_client.containers.list(all=True, filters={"name": name}) == []


def test_a_missing_image_stops_start_up_with_a_clear_message(tmp_path):
    with pytest.raises(RuntimeError, match="image marketplace-test/no-such-image:0 is not on this machine"):
        start_agent(tmp_path, {"containers": [_service("ghost", "marketplace-test/no-such-image:0", free_port(), "g")]})
