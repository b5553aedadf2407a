"""The request limiter and the connection pool: precedence of calls that do not start work.
No engine needed: slots and connection objects are counted, nothing is sent."""

from __future__ import annotations

import http.client
import threading

import pytest
from ofelia_docker_pooled.limiter import Overloaded, RequestLimiter
from ofelia_docker_pooled.transport import ConnectionPool, IdleBudget, PoolTimeout


def test_calls_that_start_work_leave_a_tenth_of_the_slots_to_the_rest() -> None:
    limiter = RequestLimiter(10, queue_timeout=0.05)
    for _ in range(9):
        limiter.acquire("exec_create")
    with pytest.raises(Overloaded, match="max-concurrent-requests"):
        limiter.acquire("exec_start")
    limiter.acquire("container_inspect")  # the tenth slot is the rest's
    with pytest.raises(Overloaded):
        limiter.acquire("ping")
    stats = limiter.stats()
    assert (stats["in_flight"], stats["timeouts"], stats["peak"]) == (10, 2, 10)


def test_a_waiting_inspect_gets_the_next_slot_before_a_waiting_start() -> None:
    limiter = RequestLimiter(2, queue_timeout=10)
    limiter.acquire("container_inspect")
    limiter.acquire("container_inspect")
    order: list[str] = []
    start_waiting = threading.Event()

    def take(operation: str) -> None:
        if operation == "exec_create":
            start_waiting.set()
        limiter.acquire(operation)
        order.append(operation)

    starter = threading.Thread(target=take, args=("exec_create",))
    starter.start()
    start_waiting.wait()
    looker = threading.Thread(target=take, args=("container_inspect",))
    looker.start()
    while limiter.stats()["waited"] < 2:
        threading.Event().wait(0.01)
    limiter.release()
    looker.join(10)
    assert order == ["container_inspect"]
    limiter.release()
    limiter.release()  # with a limit of 2, a start may take only one slot: both must be free
    starter.join(10)
    assert order == ["container_inspect", "exec_create"]


def test_stream_holds_are_released_once() -> None:
    limiter = RequestLimiter(1, queue_timeout=0.05, stream_hold=60)
    limiter.acquire("exec_start")
    token = limiter.hold()
    assert limiter.stats()["streams_holding"] == 1
    limiter.release_hold(token)
    limiter.release_hold(token)
    assert limiter.stats()["in_flight"] == 0
    limiter.acquire("ping")


def pool(max_open: int) -> ConnectionPool:
    return ConnectionPool("control", lambda: http.client.HTTPConnection("localhost"), max_open=max_open,
                          max_idle=max_open, idle_timeout=90, budget=IdleBudget(100))


def test_calls_that_start_work_hold_at_most_half_the_connections() -> None:
    connections = pool(4)
    taken = [connections.acquire(1, starts_work=True)[0] for _ in range(2)]
    with pytest.raises(PoolTimeout):
        connections.acquire(0.05, starts_work=True)
    taken += [connections.acquire(1)[0] for _ in range(2)]
    stats = connections.stats()
    assert (stats["in_use"], stats["wait_timeouts"], stats["overflow"]) == (4, 1, 0)
    # Full: a call that does not start work gets a short-lived extra connection, never waits.
    extra, reused = connections.acquire(0.05)
    assert reused is False
    assert connections.stats()["overflow"] == 1
    connections.release(extra, reusable=True)  # closed, not kept: the pool holds max-conns at most
    for conn in taken:
        connections.release(conn, reusable=True)
    stats = connections.stats()
    assert (stats["in_use"], stats["idle"]) == (0, 0)  # never connected, so none is kept
