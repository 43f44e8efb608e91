"""Fixtures shared by unit tests: the store on both engines cems supports.

`store_where` is where a test's store lives: a fresh SQLite file, or a fresh database on a
PostgreSQL server that the test session starts itself (lab.servers.postgres, on 127.0.0.1,
stopped by its pid at the end). Tests that take it run on both engines.
"""

import uuid

import pytest


@pytest.fixture(scope="session")
def postgres_url():
    from lab.servers import postgres  # pylint: disable=import-outside-toplevel
    with postgres() as url:
        yield url


def _fresh_database(server: str) -> str:
    import psycopg  # pylint: disable=import-outside-toplevel
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    return server.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(params=["sqlite", "postgresql"])
def store_where(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "cems.sqlite")
    return _fresh_database(request.getfixturevalue("postgres_url"))


@pytest.fixture
def pg_where(postgres_url):
    """A fresh, empty database on the session's PostgreSQL server."""
    return _fresh_database(postgres_url)
