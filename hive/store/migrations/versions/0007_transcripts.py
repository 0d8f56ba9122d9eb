"""Transcripts: where each role's conversation of each experiment is saved (logs/exp-N/<role>.jsonl).

A new table, nothing moved: a store from before has no transcripts to list.

Revision ID: 0007
Revises: 0006
Created: 2026-12-02
"""

from alembic import op
import sqlalchemy as sa

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "transcript",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("campaign_id", sa.Integer, sa.ForeignKey("campaign.id"), nullable=False),
        sa.Column("experiment_number", sa.Integer, nullable=False),
        sa.Column("role", sa.String, nullable=False),
        sa.Column("path", sa.Text),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("campaign_id", "experiment_number", "role"),
        if_not_exists=True,
    )
    op.create_index("ix_transcript_campaign_id", "transcript", ["campaign_id"], if_not_exists=True)


def downgrade() -> None:
    op.drop_index("ix_transcript_campaign_id", table_name="transcript")
    op.drop_table("transcript")
