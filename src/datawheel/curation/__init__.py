"""The pure algorithms behind the curate stage: label aggregation, label-issue detection,
near-duplicate clustering, annotation ranking and dataset datasheets.

Nothing here touches the store or the filesystem except ``datasheet`` (which writes the
files it is asked to write); ``stages/curate.py`` composes these and ``cycle.py`` saves.
"""
