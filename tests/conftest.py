"""Shared fixtures: a private real Redis server (never a mock, never a Redis we did not start)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from service.infrastructure.embedded_redis import EmbeddedRedis

# Helper modules that tests import (tests/test_cluster.py re-runs single-node tests against a cluster): their
# asserts are rewritten even when imported before pytest loads them as plugins.
pytest.register_assert_rewrite("tests.service_helpers", "tests.marketing_support", "tests.console_support",
                              "tests.data_helpers")

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_CSV = ROOT / "data" / "sample" / "online_retail_sample.csv"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    """One redis-server process per test session (per xdist worker), on a free port."""
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: EmbeddedRedis) -> Iterator[str]:
    """URL of the private server, emptied before each test (it is ours: nothing else lives there)."""
    if redis_server.process is None:
        redis_server.start()
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    yield redis_server.url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()
