"""The embedded Redis is one real server shared by every process of an instance."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from redis import Redis

from taskapi.core.embedded_redis import EmbeddedRedis, resolve_redis_url, socket_path


def test_two_processes_share_the_embedded_redis(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with EmbeddedRedis(data) as owner:
        assert owner.owner
        script = textwrap.dedent(f"""
            from pathlib import Path
            from redis import Redis
            from taskapi.core.embedded_redis import resolve_redis_url
            url, embedded = resolve_redis_url(None, Path({str(data)!r}))
            assert embedded is not None and not embedded.owner, "must join, not start"
            Redis.from_url(url).set("written-by", "child")
            print(url)
        """)
        child = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                               check=False, timeout=30)
        assert child.returncode == 0, child.stderr
        assert child.stdout.strip() == owner.url
        client = Redis.from_url(owner.url)
        assert client.get("written-by") == b"child"
        client.close()
        process = owner.process
    assert process is not None and process.poll() is not None  # stopped with its owner
    assert not socket_path(data).exists()


def test_long_data_dir_gets_a_short_socket_path(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    path = socket_path(deep)
    assert len(str(path)) < 108
    url, embedded = resolve_redis_url(None, deep)
    try:
        assert Redis.from_url(url).ping()
    finally:
        assert embedded is not None
        embedded.stop()


def test_configured_url_is_used_as_is(tmp_path: Path) -> None:
    assert resolve_redis_url("redis://example:6379/0", tmp_path) == ("redis://example:6379/0", None)
