"""The store's schema (SQLAlchemy Core), one table per thing the wheel remembers.

Inputs are kept only in their canonical, normalized form (``records.input``),
never as the raw upload. Snapshots themselves are Parquet files; the database
keeps their lineage (which record of which user went into which snapshot, and
which model was trained on which snapshot), so "which users' data is in model
v7?" is one join.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

users = Table(
    "users",
    metadata,
    Column("user_id", String(256), primary_key=True),
    Column("consent_training", Boolean, nullable=False, default=False),
    Column("consent_analytics", Boolean, nullable=False, default=False),
    Column("consent_updated_at", DateTime(timezone=True), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

consent_events = Table(
    "consent_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("user_id", String(256), nullable=False, index=True),
    Column("scope", String(32), nullable=False),
    Column("granted", Boolean, nullable=False),
    Column("actor", String(32), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
)

records = Table(
    "records",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("user_id", String(256), nullable=False, index=True),
    Column("kind", String(16), nullable=False),  # interaction | contribution
    Column("content_hash", String(64), nullable=False, index=True),
    Column("input", LargeBinary, nullable=False),
    Column("label", String(256)),  # the user's label (contributions)
    Column("predicted_label", String(256)),  # what the model answered (interactions)
    Column("model_name", String(256)),
    Column("model_version", String(64)),
    Column("consent_training", Boolean, nullable=False),  # consent when the record was made
    Column("meta", JSON, nullable=False, default=dict),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

feedback = Table(
    "feedback",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("record_id", String(32), ForeignKey("records.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("user_id", String(256), nullable=False, index=True),
    Column("label", String(256)),
    Column("rating", Integer),
    Column("comment", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

cycles = Table(
    "cycles",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("status", String(16), nullable=False),  # running | done | failed
    Column("trigger", String(16), nullable=False),
    Column("pid", Integer),  # process running it, so a crashed cycle does not block the next forever
    Column("decision", String(16)),  # promoted | rejected
    Column("champion_version", Integer),
    Column("candidate_version", Integer),
    Column("snapshot_id", String(64)),
    Column("report", JSON),
    Column("error", Text),
    Column("params", JSON, nullable=False, default=dict),  # e.g. {"without_user_ref": ...} for a forget run
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
)

verdicts = Table(
    "verdicts",
    metadata,
    Column("cycle_id", String(32), ForeignKey("cycles.id", ondelete="CASCADE"), primary_key=True),
    Column("record_id", String(32), primary_key=True),
    Column("stage", String(16), primary_key=True),  # comply | curate
    Column("verdict", String(16), nullable=False),  # accepted | rejected
    Column("reason", String(64), nullable=False),
)

snapshots = Table(
    "snapshots",
    metadata,
    Column("id", String(64), primary_key=True),  # fingerprint
    Column("cycle_id", String(32), nullable=False),
    Column("path", String(1024), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("rows", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

snapshot_members = Table(
    "snapshot_members",
    metadata,
    Column("snapshot_id", String(64), ForeignKey("snapshots.id"), primary_key=True),
    Column("record_id", String(32), primary_key=True),
    Column("user_id", String(256), nullable=False, index=True),
)
Index("ix_snapshot_members_record", snapshot_members.c.record_id)

user_reliability = Table(
    "user_reliability",
    metadata,
    Column("user_id", String(256), primary_key=True),
    Column("reliability", Float, nullable=False),  # estimated share of the user's labels that are right
    Column("votes", Integer, nullable=False),
    Column("excluded", Boolean, nullable=False),  # left out of the last aggregation
    Column("cycle_id", String(32), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

annotation_queue = Table(
    "annotation_queue",
    metadata,
    Column("content_hash", String(64), primary_key=True),  # the item id annotators see
    Column("record_id", String(32), nullable=False, index=True),  # where its content lives
    Column("score", Float, nullable=False),
    Column("signals", JSON, nullable=False),
    Column("cycle_id", String(32), nullable=False),
)

interaction_scores = Table(  # the product's model's scores an interaction was logged with (POST /v1/interactions)
    "interaction_scores",
    metadata,
    Column("record_id", String(32), ForeignKey("records.id", ondelete="CASCADE"), primary_key=True),
    Column("scores", JSON, nullable=False),  # label -> probability
)

shadow_predictions = Table(
    "shadow_predictions",
    metadata,
    Column("record_id", String(32), primary_key=True),  # the interaction the champion answered
    Column("version", Integer, nullable=False),  # the shadow model
    Column("label", String(256), nullable=False),  # what the shadow would have answered
)

annotation_answers = Table(
    "annotations",
    metadata,
    Column("content_hash", String(64), primary_key=True),  # the latest answer wins
    Column("label", String(256), nullable=False),
    Column("annotator", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

models = Table(
    "models",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("model_name", String(64), nullable=False),
    Column("path", String(1024), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("metrics", JSON, nullable=False),
    Column("dataset_id", String(64)),  # snapshot trained on (besides seed); None for v1
    Column("parent", Integer),
    Column("cycle_id", String(32)),
    Column("train_info", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

exports = Table(  # a model version in another runtime's format, checked like the weights before it serves
    "exports",
    metadata,
    Column("version", Integer, ForeignKey("models.version"), primary_key=True),
    Column("format", String(16), primary_key=True),  # "onnx"
    Column("path", String(1024), nullable=False),
    Column("sha256", String(64), nullable=False),
)

aliases = Table(
    "aliases",
    metadata,
    Column("name", String(32), primary_key=True),  # champion | previous
    Column("version", Integer, ForeignKey("models.version"), nullable=False),
)

erasures = Table(
    "erasures",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("user_ref", String(64), nullable=False),  # keyed hash of the user id, never the id
    Column("records_deleted", Integer, nullable=False),
    Column("feedback_deleted", Integer, nullable=False),
    Column("model_versions", JSON, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
)

audit = Table(
    "audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),  # sequence number in the chain
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", String(32), nullable=False),
    Column("action", String(32), nullable=False),
    Column("detail", JSON, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)

audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),  # always 1
    Column("seq", Integer, nullable=False),
    Column("hash", String(64), nullable=False),
)

contributor_values = Table(  # what each consenting user's labels were worth in the latest cycle (community page)
    "contributor_values",
    metadata,
    Column("user_id", String(256), primary_key=True),
    Column("cycle_id", String(32), nullable=False),
    Column("value", Float, nullable=False),  # golden-set accuracy points their labels account for (KNN-Shapley)
    Column("points", Integer, nullable=False),  # labels valued
    Column("per_class", JSON, nullable=False),  # label -> accuracy points on that class
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# -- text generation -------------------------------------------------------------------------------

completions = Table(  # the answers a text-generation interaction was given (n of them when n > 1)
    "completions",
    metadata,
    Column("record_id", String(32), ForeignKey("records.id", ondelete="CASCADE"), primary_key=True),
    Column("idx", Integer, primary_key=True, autoincrement=False),
    Column("text", Text, nullable=False),  # screened like every text a person may have influenced
)

answer_feedback = Table(  # what feedback on a generated answer adds: the answer wanted, the better of two
    "answer_feedback",
    metadata,
    Column("feedback_id", String(32), ForeignKey("feedback.id", ondelete="CASCADE"), primary_key=True),
    Column("correction", Text),
    Column("chosen", Integer),  # index into the interaction's completions
)
