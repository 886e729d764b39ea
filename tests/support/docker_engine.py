from functools import lru_cache


@lru_cache(maxsize=1)
def docker_available() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
    except Exception:
        return False
    return True
