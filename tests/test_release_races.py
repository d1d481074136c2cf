"""Alias changes under concurrency: every promotion, rollback and trial change lands, none is lost."""

from __future__ import annotations

import threading

import pytest

from conftest import register_model
from datawheel.errors import Conflict
from datawheel.models.registry import Registry
from datawheel.workspace import Workspace

TRIALS = 20


def _register(ws: Workspace) -> int:
    return register_model(ws, ws.task.build_model("mlp", len(ws.labels)))


def _race(*calls) -> list[BaseException]:
    barrier = threading.Barrier(len(calls))
    errors: list[BaseException] = []

    def run(call) -> None:
        barrier.wait()
        try:
            call()
        except BaseException as exc:  # noqa: BLE001 - collected: the test reports them
            errors.append(exc)
    threads = [threading.Thread(target=run, args=(c,)) for c in calls]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return errors


def test_concurrent_promote_and_rollback_end_in_a_serial_state(ws: Workspace):
    """Promote v3 and roll back at once, 20 times: the end state is one that some serial order gives."""
    v2, v3 = _register(ws), _register(ws)
    registry = Registry(ws)
    serial = [{"champion": v2, "previous": v3},  # promote, then rollback
              {"champion": v3, "previous": 1}]  # rollback, then promote
    for _ in range(TRIALS):
        registry.promote(v2, actor="test", reason="reset")
        if ws.store.aliases().get("previous") != 1:
            registry.promote(1, actor="test", reason="reset")
            registry.promote(v2, actor="test", reason="reset")
        assert ws.store.aliases() == {"champion": v2, "previous": 1}
        errors = _race(lambda: Registry(ws).promote(v3, actor="a", reason="race"),
                       lambda: Registry(ws).rollback(actor="b"))
        assert not errors
        assert ws.store.aliases() in serial
    assert ws.store.verify_audit().ok


def test_the_canary_monitor_never_clears_a_canary_it_did_not_judge(ws: Workspace):
    """A monitor's rollback of canary v2 leaves alone a canary v3 an operator started meanwhile."""
    v2, v3 = _register(ws), _register(ws)
    registry = Registry(ws)
    registry.trial("canary", v2, actor="admin")
    registry.trial("canary", v3, actor="admin")
    with pytest.raises(Conflict):
        registry.trial("canary", None, actor="canary-monitor", only_if=v2)
    assert ws.store.aliases()["canary"] == v3
