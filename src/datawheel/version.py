"""The package version, read from the installed metadata: pyproject.toml is the one place it is written."""

import importlib.metadata

try:  # pyproject.toml is the one place the version is written
    __version__ = importlib.metadata.version("datawheel")
except importlib.metadata.PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
