"""The public API is pinned: adding or removing a name is a deliberate act."""

import datawheel


def test_public_names_are_pinned():
    """``datawheel.__all__`` lists exactly these names, and each resolves."""
    assert sorted(datawheel.__all__) == sorted([
        "Client", "ClientError", "ConfigError", "Conflict", "CycleError", "DatawheelError", "ImportDataError",
        "InvalidInput", "NotFound", "Profile", "Settings", "Simulation", "Workspace", "WorkspaceConfig",
        "WorkspaceError", "__version__", "create_app", "default_population", "init_workspace", "load_config",
        "run_cycle",
    ])
    for name in datawheel.__all__:
        assert getattr(datawheel, name) is not None


def test_settings_refuse_placeholder_keys():
    """A guessable key is refused at start-up rather than served."""
    import pytest
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="placeholder"):
        datawheel.Settings(app_key="changeme")
