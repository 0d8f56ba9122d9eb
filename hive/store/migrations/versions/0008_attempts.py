"""Attempts: each commit of an experiment (the coder's, then each repair after a crash), with a crash's log tail.

A new table, nothing moved: an experiment from before has no attempts listed (its one commit is on its row).

Revision ID: 0008
Revises: 0007
Created: 2026-12-02
"""

from alembic import op
import sqlalchemy as sa

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "attempt",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("experiment_id", sa.Integer, sa.ForeignKey("experiment.id"), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("commit", sa.String, nullable=False),
        sa.Column("status", sa.String, nullable=False),
        sa.Column("summary", sa.Text),
        sa.Column("failure", sa.Text),
        sa.Column("tail", sa.Text),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("experiment_id", "attempt"),
        if_not_exists=True,
    )
    op.create_index("ix_attempt_experiment_id", "attempt", ["experiment_id"], if_not_exists=True)


def downgrade() -> None:
    op.drop_index("ix_attempt_experiment_id", table_name="attempt")
    op.drop_table("attempt")
