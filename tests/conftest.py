"""Shared fixtures: a digits workspace built once per session and copied per test, so tests stay fast and isolated."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from datawheel.api.app import create_app
from datawheel.demo.run import LABELS, DigitSplits, digit_splits, write_image_folder
from datawheel.settings import Settings
from datawheel.wheel.init import init_workspace
from datawheel.workspace import Workspace

APP_KEY = "app-key-for-tests-0123456789"
ADMIN_KEY = "admin-key-for-tests-0123456789"


@pytest.fixture(scope="session")
def splits() -> DigitSplits:
    return digit_splits()


@pytest.fixture(scope="session")
def image_dirs(tmp_path_factory: pytest.TempPathFactory, splits: DigitSplits) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("digits")
    return write_image_folder(base / "seed", splits.seed), write_image_folder(base / "golden", splits.golden)


@pytest.fixture(scope="session")
def template_ws(tmp_path_factory: pytest.TempPathFactory, image_dirs: tuple[Path, Path]) -> Path:
    root = tmp_path_factory.mktemp("template") / "ws"
    ws = init_workspace(root, task="image-classification", labels=LABELS, seed_data=image_dirs[0],
                        eval_data=image_dirs[1], epochs=15)
    ws.store.close()
    return root


@pytest.fixture
def ws(tmp_path: Path, template_ws: Path) -> Workspace:
    root = tmp_path / "ws"
    shutil.copytree(template_ws, root)
    workspace = Workspace.open(root)
    yield workspace
    workspace.store.close()


def make_client(ws: Workspace, **settings: object) -> TestClient:
    app = create_app(ws, Settings(app_key=APP_KEY, admin_key=ADMIN_KEY, cycle_in_subprocess=False, **settings))
    return TestClient(app, raise_server_exceptions=False)


@pytest.fixture
def client(ws: Workspace) -> TestClient:
    with make_client(ws) as c:
        yield c


APP = {"Authorization": f"Bearer {APP_KEY}"}

#: the local PostgreSQL server (trust auth); tests make and drop a database of their own on it
PG_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped after it; skips where no server runs."""
    from sqlalchemy import create_engine, text

    try:
        admin = create_engine(f"{PG_SERVER}/test", isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text("select 1"))
    except Exception as exc:  # noqa: BLE001 - no server here: say so rather than pretend
        pytest.skip(f"no PostgreSQL at 127.0.0.1:5432 ({type(exc).__name__})")
    name = f"dw_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    yield f"{PG_SERVER}/{name}"
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE {name} WITH (FORCE)"))
    admin.dispose()
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}



def register_model(ws: Workspace, module: object) -> int:
    """Register an MLP as a new version (parent v1) without a cycle: what release tests start trials from."""
    from datawheel.models.registry import Registry
    from datawheel.stages.evaluate import evaluate
    from datawheel.stages.train import TrainedModel

    info = {"model_name": "mlp", "examples": 0, "epochs": 0, "seed": 0, "optimizer": "-", "schedule": "-"}
    metrics = evaluate(ws.task, module, "mlp", ws.golden(), ws.labels)
    return Registry(ws).register(TrainedModel("mlp", module, info), metrics,
                                 dataset_id=None, parent=1, cycle_id=None, seed_items=0)
