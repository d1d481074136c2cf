"""The wheel end to end on the digits, over real HTTP, with cycles in their own processes."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq

from datawheel.api.app import create_app
from datawheel.client import Client
from datawheel.demo.run import LABELS, BackgroundServer, _free_port, _pool_inputs
from datawheel.demo.simulate import Simulation
from datawheel.settings import Settings


def snapshot_user_refs(ws) -> dict[str, set[str]]:
    out = {}
    for path in sorted((ws.root / "snapshots").glob("*.parquet")):
        refs = pq.read_table(path, columns=["user_refs"]).column("user_refs").to_pylist()
        out[path.stem] = {r for row in refs for r in row}
    return out


def test_the_wheel_turns(ws, splits):
    """Accuracy rises across cycles; no non-consenting, withdrawn or erased user's data enters a later snapshot;
    no promotion lowers golden accuracy beyond the tolerance."""
    app = create_app(ws, Settings(cycle_in_subprocess=True))
    port = _free_port()
    v1 = ws.store.get_model(1)["metrics"]["accuracy"]
    reports = []
    with BackgroundServer(app, port), Client(f"http://127.0.0.1:{port}", ws.secrets.app_key) as product, \
            Client(f"http://127.0.0.1:{port}", ws.secrets.admin_key) as operator:
        sim = Simulation(product, _pool_inputs(splits.pool, np.random.default_rng(1)), LABELS, n_users=30, seed=7)
        honest = [u.user_id for u in sim.users if u.profile.name == "honest"]
        refused = [u.user_id for u in sim.users if not u.profile.consent]
        gone, withdrawn = honest[0], honest[1]
        before = {}
        for n in range(4):
            sim.run(250)
            if n == 1:
                before = snapshot_user_refs(ws)
                assert product.erase(gone).records_deleted > 0
                product.set_consent(withdrawn, False)
                sim.users = [u for u in sim.users if u.user_id not in (gone, withdrawn)]
            state = operator.wait_cycle(operator.start_cycle(), timeout=300)
            assert state.status == "done", state.error
            reports.append(state.report)
    tolerance = ws.config.gate.tolerance
    for r in reports:
        if r["decision"] == "promoted":
            assert r["candidate_metrics"]["accuracy"] >= r["champion_metrics_before"]["accuracy"] - tolerance
    final = reports[-1]["champion_accuracy"]
    assert final >= v1 + 0.02, (v1, [r["champion_accuracy"] for r in reports])
    assert reports[-1]["rejected_by_reason"].get("no_consent_at_creation", 0) > 0
    assert reports[-1]["snapshot"]["users_excluded"] >= 1  # the adversarial group
    # lineage in the store and the Parquet files agree: refused users never, erased/withdrawn not after
    for user in refused:
        assert ws.store.snapshots_of_user(user) == []
    after = {k: v for k, v in snapshot_user_refs(ws).items() if k not in before}
    assert len(after) == 3  # cycles 2, 3 and 4 ran after the erasure
    for refs in after.values():
        assert not refs & {ws.user_ref(u) for u in [*refused, gone, withdrawn]}
    assert any(ws.user_ref(gone) in refs for refs in before.values())
