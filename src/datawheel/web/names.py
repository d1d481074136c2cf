"""Pseudonyms people can read: a keyed user reference turned into "amber-otter-3f2a".

Made from ``Workspace.user_ref`` (an HMAC of the id under the workspace's pseudonym key), so the name is
stable for a user, says nothing about who they are, and cannot be turned back into their id without the
key. The community page shows only these.
"""

from __future__ import annotations

ADJECTIVES = ("amber", "brisk", "calm", "deft", "eager", "fair", "gentle", "hardy", "keen", "lucid", "merry",
              "nimble", "olive", "plucky", "quiet", "rapid", "sunny", "tidy", "vivid", "witty", "young", "zesty",
              "bold", "crisp", "dusky", "early", "frank", "grand", "humble", "jolly", "kind", "lively")
ANIMALS = ("otter", "heron", "lynx", "panda", "wren", "ibex", "koala", "marten", "newt", "orca", "puffin", "quail",
           "raven", "seal", "tapir", "urchin", "vole", "walrus", "yak", "zebra", "badger", "crane", "dingo", "egret",
           "ferret", "gecko", "hare", "jackal", "kiwi", "lemur", "moose", "narwhal")


def display_name(user_ref: str) -> str:
    """A readable name from a hex user reference (its first 32 bits)."""
    n = int(user_ref[:8], 16)
    return f"{ADJECTIVES[n % len(ADJECTIVES)]}-{ANIMALS[(n >> 5) % len(ANIMALS)]}-{user_ref[8:12]}"
