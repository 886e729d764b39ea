"""Django's Redis cache, with one redis-py client per connection pool instead of one per call.

Django builds a new ``redis.Redis`` around the pool on every cache call; building it
cost more CPU than the GET it then sends (a submit makes several: the API key, the rate
limit, the served-model flag). A client is safe to share between threads: each command
takes a connection from the pool and returns it.
"""
from __future__ import annotations

from django.core.cache.backends import redis as django_redis


class RedisCacheClient(django_redis.RedisCacheClient):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._clients: dict[object, object] = {}  # pool -> its client

    def get_client(self, key=None, *, write=False):
        pool = self._get_connection_pool(write)
        client = self._clients.get(pool)
        if client is None:
            client = self._clients[pool] = self._client(connection_pool=pool)
        return client


class RedisCache(django_redis.RedisCache):
    def __init__(self, server, params) -> None:
        super().__init__(server, params)
        self._class = RedisCacheClient
