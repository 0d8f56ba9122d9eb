"""Baseline: the schema Hive created before it had migrations (SQLModel create_all plus additive ALTERs, as of 683ab66).

A new database gets every table. A store made before Alembic (no alembic_version table) keeps its rows: the
tables it has gain the columns and indexes added since it was made, as the old engine did on every open.

Revision ID: 0001
Revises:
Created: 2026-12-01
"""

from alembic import op
import sqlalchemy as sa

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# a frozen copy of hive/store/models.py at this revision: later migrations change the schema, never this list
meta = sa.MetaData()
WHEN = sa.DateTime(timezone=True)

sa.Table(
    "campaign", meta,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String, nullable=False),
    sa.Column("playbook_path", sa.String, nullable=False, default=""),
    sa.Column("playbook_json", sa.Text),
    sa.Column("objective_metric", sa.String, nullable=False, default=""),
    sa.Column("direction", sa.String, nullable=False, default="minimize"),
    sa.Column("status", sa.String, nullable=False, default="created"),
    sa.Column("baseline_commit", sa.String, nullable=False, default=""),
    sa.Column("created_at", WHEN, nullable=False),
    sa.Column("started_at", WHEN),
    sa.Column("updated_at", WHEN, nullable=False),
    sa.Column("active_seconds", sa.Float, nullable=False, default=0.0),
    sa.Index("ix_campaign_name", "name", unique=True),
)
sa.Table(
    "experiment", meta,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("campaign_id", sa.Integer, sa.ForeignKey("campaign.id"), nullable=False),
    sa.Column("number", sa.Integer, nullable=False),
    sa.Column("parent_number", sa.Integer),
    sa.Column("kind", sa.String, nullable=False, default="candidate"),
    sa.Column("hypothesis", sa.Text),
    sa.Column("rationale", sa.Text),
    sa.Column("proposal_json", sa.Text),
    sa.Column("diff", sa.Text),
    sa.Column("commit", sa.String, nullable=False, default=""),
    sa.Column("parent_commit", sa.String, nullable=False, default=""),
    sa.Column("branch", sa.String, nullable=False, default=""),
    sa.Column("status", sa.String, nullable=False, default="proposed"),
    sa.Column("verdict", sa.String),
    sa.Column("verdict_reason", sa.Text),
    sa.Column("metric_mean", sa.Float),
    sa.Column("metric_std", sa.Float),
    sa.Column("p_value", sa.Float),
    sa.Column("n_seeds", sa.Integer, nullable=False, default=0),
    sa.Column("gpu_seconds", sa.Float, nullable=False, default=0.0),
    sa.Column("cpu_seconds", sa.Float, nullable=False, default=0.0),
    sa.Column("tokens", sa.Integer, nullable=False, default=0),
    sa.Column("dollars", sa.Float, nullable=False, default=0.0),
    sa.Column("created_at", WHEN, nullable=False),
    sa.Column("started_at", WHEN),
    sa.Column("finished_at", WHEN),
    sa.UniqueConstraint("campaign_id", "number"),
    sa.Index("ix_experiment_campaign_id", "campaign_id"),
    sa.Index("ix_experiment_status", "campaign_id", "status", "number"),
    sa.Index("ix_experiment_verdict", "campaign_id", "verdict", "finished_at"),
    sa.Index("ix_experiment_metric", "campaign_id", "metric_mean"),
)
sa.Table(
    "event", meta,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("campaign_id", sa.Integer, sa.ForeignKey("campaign.id"), nullable=False),
    sa.Column("ts", WHEN, nullable=False),
    sa.Column("experiment_number", sa.Integer),
    sa.Column("kind", sa.String, nullable=False, default=""),
    sa.Column("message", sa.Text),
    sa.Index("ix_event_ts", "ts"),
    sa.Index("ix_event_campaign_id", "campaign_id"),
    sa.Index("ix_event_feed", "campaign_id", "id"),
)
sa.Table(
    "llmcall", meta,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("campaign_id", sa.Integer, sa.ForeignKey("campaign.id"), nullable=False),
    sa.Column("experiment_number", sa.Integer),
    sa.Column("role", sa.String, nullable=False, default=""),
    sa.Column("model", sa.String, nullable=False, default=""),
    sa.Column("prompt_tokens", sa.Integer, nullable=False, default=0),
    sa.Column("completion_tokens", sa.Integer, nullable=False, default=0),
    sa.Column("dollars", sa.Float, nullable=False, default=0.0),
    sa.Column("seconds", sa.Float, nullable=False, default=0.0),
    sa.Column("ok", sa.Boolean, nullable=False, default=True),
    sa.Column("error", sa.Text),
    sa.Column("ts", WHEN, nullable=False),
    sa.Index("ix_llmcall_campaign_id", "campaign_id"),
)
sa.Table(
    "pullrequest", meta,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("campaign_id", sa.Integer, sa.ForeignKey("campaign.id"), nullable=False),
    sa.Column("number", sa.Integer, nullable=False),
    sa.Column("experiment_number", sa.Integer, nullable=False),
    sa.Column("parent_pr", sa.Integer),
    sa.Column("title", sa.String, nullable=False, default=""),
    sa.Column("body", sa.Text),
    sa.Column("diff", sa.Text),
    sa.Column("commit", sa.String, nullable=False, default=""),
    sa.Column("status", sa.String, nullable=False, default="open"),
    sa.Column("reason", sa.Text),
    sa.Column("created_at", WHEN, nullable=False),
    sa.Column("decided_at", WHEN),
    sa.UniqueConstraint("campaign_id", "number"),
    sa.Index("ix_pullrequest_campaign_id", "campaign_id"),
)
sa.Table(
    "lesson", meta,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("campaign_id", sa.Integer, sa.ForeignKey("campaign.id"), nullable=False),
    sa.Column("experiment_number", sa.Integer),
    sa.Column("source", sa.String, nullable=False, default="critic"),
    sa.Column("text", sa.Text),
    sa.Column("ts", WHEN, nullable=False),
    sa.Index("ix_lesson_campaign_id", "campaign_id"),
)
sa.Table(
    "run", meta,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("experiment_id", sa.Integer, sa.ForeignKey("experiment.id"), nullable=False),
    sa.Column("seed", sa.Integer, nullable=False),
    sa.Column("status", sa.String, nullable=False, default="queued"),
    sa.Column("metrics_json", sa.Text),
    sa.Column("exit_code", sa.Integer),
    sa.Column("wall_seconds", sa.Float),
    sa.Column("peak_rss_mb", sa.Float),
    sa.Column("devices", sa.String, nullable=False, default=""),
    sa.Column("log_path", sa.String, nullable=False, default=""),
    sa.Column("error", sa.Text),
    sa.Column("command", sa.Text),
    sa.Column("env_json", sa.Text),
    sa.Column("started_at", WHEN),
    sa.Column("finished_at", WHEN),
    sa.UniqueConstraint("experiment_id", "seed"),
    sa.Index("ix_run_experiment_id", "experiment_id"),
)


def upgrade() -> None:
    conn = op.get_bind()
    have = set(sa.inspect(conn).get_table_names())
    for table in meta.sorted_tables:
        if table.name not in have:
            table.create(conn)
            continue
        _add_missing_columns(conn, table)
        for index in table.indexes:
            index.create(conn, checkfirst=True)


def _add_missing_columns(conn: sa.Connection, table: sa.Table) -> None:
    """A pre-Alembic store made by an older Hive gains the columns added since (nullable, with their default)."""
    have = {c["name"] for c in sa.inspect(conn).get_columns(table.name)}
    for column in table.columns:
        if column.name in have:
            continue
        default = column.default.arg if column.default is not None else None
        clause = ""
        if isinstance(default, (bool, int, float)):
            clause = f" DEFAULT {int(default) if isinstance(default, bool) else default}"
        elif isinstance(default, str):
            clause = " DEFAULT '" + default.replace("'", "''") + "'"
        kind = column.type.compile(dialect=conn.dialect)
        op.execute(f'ALTER TABLE "{table.name}" ADD COLUMN "{column.name}" {kind}{clause}')


def downgrade() -> None:
    raise NotImplementedError("the baseline is where Hive's schema history starts; there is nothing before it")
