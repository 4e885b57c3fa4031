"""core/redis_pipe.py against real redis-servers: pipelined calls each get their own answer,
a flushed script is loaded again, errors are redis-py's, and a stopped, paused or restarted
server fails the calls in flight at once (or within the timeout) and is reconnected to."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.asyncio import ConnectionPool
from redis.exceptions import ConnectionError, ResponseError, TimeoutError

from taskapi.core.redis_pipe import ScriptPipe, pack
from tests.support.faults import RedisServer

# Sets KEYS[1] to ARGV[1] and answers what the gate's script answers in kind: an integer,
# strings, a nil in the middle (Lua false) and the value read back.
ECHO = """
if ARGV[1] == 'fail' then return redis.error_reply('ERR asked to fail') end
redis.call('SET', KEYS[1], ARGV[1])
return {tonumber(ARGV[2]), ARGV[1], false, redis.call('GET', KEYS[1])}
"""


def _pipe(url: str, **pool: Any) -> ScriptPipe:
    return ScriptPipe(ConnectionPool.from_url(url, **pool), ECHO)


@pytest.fixture
def own_redis(tmp_path: Path) -> Any:
    server = RedisServer(tmp_path / "redis", password="s3cret pass")
    server.start()
    yield server
    server.close()


def test_pack_is_resp() -> None:
    assert pack(b"GET", "k", 12) == b"*3\r\n$3\r\nGET\r\n$1\r\nk\r\n$2\r\n12\r\n"


async def test_concurrent_calls_each_get_their_own_answer(redis_url: str, redis_sync) -> None:  # type: ignore[no-untyped-def]
    pipe = _pipe(redis_url)
    answers = await asyncio.gather(*(pipe([f"pipe:{i}"], [f"v{i}", i]) for i in range(500)))
    assert answers == [[i, f"v{i}".encode(), None, f"v{i}".encode()] for i in range(500)]
    assert redis_sync.get("pipe:499") == b"v499"  # in the URL's database, not database 0


async def test_a_flushed_script_is_loaded_again(redis_url: str, redis_sync) -> None:  # type: ignore[no-untyped-def]
    pipe = _pipe(redis_url)
    assert (await pipe(["pipe:a"], ["one", 1]))[0] == 1
    redis_sync.script_flush()
    assert (await pipe(["pipe:a"], ["two", 2]))[1] == b"two"
    assert redis_sync.script_exists(hashlib.sha1(ECHO.encode(), usedforsecurity=False).hexdigest()) == [True]


async def test_an_error_reply_is_a_response_error_and_the_next_call_works(redis_url: str, redis_sync) -> None:  # type: ignore[no-untyped-def]
    pipe = _pipe(redis_url)
    with pytest.raises(ResponseError, match="asked to fail"):
        await pipe(["pipe:e"], ["fail", 0])
    assert (await pipe(["pipe:e"], ["fine", 3]))[0] == 3


async def test_a_cancelled_caller_does_not_shift_the_answers(redis_url: str, redis_sync) -> None:  # type: ignore[no-untyped-def]
    pipe = _pipe(redis_url)
    await pipe(["pipe:w"], ["warm", 0])
    calls = [asyncio.create_task(pipe([f"pipe:c{i}"], [f"c{i}", i])) for i in range(20)]
    await asyncio.sleep(0)  # written, answers not read yet
    for task in calls[::3]:
        task.cancel()
    done = await asyncio.gather(*calls, return_exceptions=True)
    for i, answer in enumerate(done):
        if i % 3 == 0:
            assert isinstance(answer, asyncio.CancelledError)
        else:
            assert answer[0] == i
    assert (await pipe(["pipe:after"], ["after", 99]))[0] == 99


async def test_password_stop_and_restart(own_redis: RedisServer) -> None:
    url = f"redis://:{own_redis.password.replace(' ', '%20')}@127.0.0.1:{own_redis.port}/3"
    pipe = _pipe(url, socket_timeout=1.0)
    assert (await pipe(["k"], ["up", 1]))[0] == 1
    in_db = redis.Redis(port=own_redis.port, password=own_redis.password, db=3)
    assert in_db.get("k") == b"up" and own_redis.client().get("k") is None  # 3, not 0
    own_redis.stop()
    with pytest.raises(ConnectionError):
        await pipe(["k"], ["down", 2])
    own_redis.start()
    assert (await pipe(["k"], ["back", 3]))[1] == b"back"
    wrong = _pipe(f"redis://:nope@127.0.0.1:{own_redis.port}/0")
    with pytest.raises(ConnectionError, match="refused the connection setup"):
        await wrong(["k"], ["x", 0])


async def test_a_paused_server_times_the_calls_out_then_recovers(own_redis: RedisServer) -> None:
    url = f"redis://:{own_redis.password.replace(' ', '%20')}@127.0.0.1:{own_redis.port}/0"
    pipe = _pipe(url, socket_timeout=0.5)
    assert (await pipe(["k"], ["up", 1]))[0] == 1
    assert own_redis.process is not None
    os.kill(own_redis.process.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        results = await asyncio.gather(*(pipe(["k"], ["stuck", i]) for i in range(10)),
                                       return_exceptions=True)
        waited = time.monotonic() - started
        assert all(isinstance(r, TimeoutError) for r in results), results
        assert 0.4 < waited < 2.0
    finally:
        os.kill(own_redis.process.pid, signal.SIGCONT)
    assert (await pipe(["k"], ["resumed", 5]))[0] == 5


async def test_close_drops_the_connection_and_a_later_call_connects_again(redis_url: str, redis_sync) -> None:  # type: ignore[no-untyped-def]
    pipe = _pipe(redis_url)
    assert (await pipe(["pipe:z"], ["one", 1]))[0] == 1
    first = pipe._link
    assert first is not None and first.transport is not None
    pipe.close()
    assert first.lost and first.transport.is_closing()
    assert (await pipe(["pipe:z"], ["two", 2]))[0] == 2
    assert pipe._link is not first and not pipe._link.lost


async def test_a_caller_cancelled_during_the_connect_does_not_fail_the_others(own_redis: RedisServer) -> None:
    url = f"redis://:{own_redis.password.replace(' ', '%20')}@127.0.0.1:{own_redis.port}/0"
    pipe = _pipe(url, socket_timeout=5.0, socket_connect_timeout=5.0)
    assert own_redis.process is not None
    os.kill(own_redis.process.pid, signal.SIGSTOP)  # the connect's AUTH waits for an answer
    try:
        calls = [asyncio.create_task(pipe(["k"], [f"v{i}", i])) for i in range(5)]
        await asyncio.sleep(0.2)
        calls[0].cancel()  # the caller that started the connect goes away
    finally:
        os.kill(own_redis.process.pid, signal.SIGCONT)
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert isinstance(results[0], asyncio.CancelledError)
    assert [r[0] for r in results[1:]] == [1, 2, 3, 4]


async def test_a_connection_lost_right_after_connecting_fails_the_call(redis_url: str, redis_sync, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    pipe = _pipe(redis_url)
    connect = pipe._connect

    async def connect_then_lose(loop: Any) -> Any:  # the fault: Redis closes at once
        link = await connect(loop)
        link.fail(ConnectionError("closed by the server"))
        await asyncio.sleep(0.05)  # its connection_lost has run before the caller's turn
        return link

    monkeypatch.setattr(pipe, "_connect", connect_then_lose)
    with pytest.raises(ConnectionError):
        await asyncio.wait_for(pipe(["k"], ["v", 1]), 3)
    monkeypatch.undo()
    assert (await pipe(["k"], ["v", 2]))[0] == 2
