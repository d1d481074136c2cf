"""The store: the one object the rest of datawheel talks to the database through.

Its queries live in ``people.py``, ``erasure.py``, ``runs.py``, ``curation.py``, ``live.py`` and
``community.py`` (what the web app reads); this
module joins them.

Every write runs in its own transaction and is committed before the method
returns, so a caller that acknowledges a write after calling here is telling
the truth. SQLite (WAL, ``synchronous=FULL``) by default; PostgreSQL through
any ``postgresql://`` URL.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from sqlalchemy import Engine

from datawheel.store import tables as t
from datawheel.store.chat import ChatQueries
from datawheel.store.community import CommunityQueries
from datawheel.store.curation import CurationQueries
from datawheel.store.db import make_engine
from datawheel.store.erasure import ErasureQueries
from datawheel.store.live import LiveQueries
from datawheel.store.people import PeopleQueries
from datawheel.store.runs import RunQueries


def _unkeyed_ref(user_id: str) -> str:
    return hashlib.sha256(user_id.encode()).hexdigest()[:32]


class Store(PeopleQueries, ErasureQueries, RunQueries, CurationQueries, LiveQueries, CommunityQueries,
            ChatQueries):
    def __init__(self, engine: Engine, user_ref: Callable[[str], str] = _unkeyed_ref) -> None:
        self.engine = engine
        #: how users are named in the audit log and erasure receipts: a keyed pseudonym, never the id
        self.user_ref = user_ref

    @classmethod
    def open(cls, url: str, user_ref: Callable[[str], str] = _unkeyed_ref) -> Store:
        store = cls(make_engine(url), user_ref)
        if store._upgradable():
            t.metadata.create_all(store.engine)  # checkfirst: existing tables are left alone
        return store

    def _upgradable(self) -> bool:
        """An existing workspace's database: tables added by a later release may be missing."""
        with self.engine.connect() as conn:
            return conn.dialect.has_table(conn, "models")

    def close(self) -> None:
        self.engine.dispose()
