"""``python -m datawheel.cli``: the same commands as the ``datawheel`` script."""

from datawheel.cli.main import app

app()
