"""The cycle's stages, in the order the wheel turns: comply, curate, train, evaluate, release.

Each stage takes the previous stage's artifact plus its own frozen config and
returns a new artifact. Stages never import later stages, the API or the store.
"""
