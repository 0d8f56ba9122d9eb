"""Experiment.tokens and Experiment.dollars are summed from the experiment's LLM calls where shown, not stored.

They were that sum, taken when the experiment was recorded; every call stays in llmcall, so nothing is lost (a
call made for the experiment after it was recorded now counts too). The new index makes the per-experiment sum
one index range, however many calls the campaign has made.

Revision ID: 0005
Revises: 0004
Created: 2026-12-02
"""

from alembic import op
import sqlalchemy as sa

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # checkfirst: a store that lost its alembic_version table (recognised by the baseline) may have it already
    llmcall = sa.Table("llmcall", sa.MetaData(), sa.Column("campaign_id", sa.Integer),
                       sa.Column("experiment_number", sa.Integer))
    sa.Index("ix_llmcall_experiment", llmcall.c.campaign_id, llmcall.c.experiment_number).create(
        op.get_bind(), checkfirst=True)
    with op.batch_alter_table("experiment") as batch:
        batch.drop_column("tokens")
        batch.drop_column("dollars")


def downgrade() -> None:
    with op.batch_alter_table("experiment") as batch:
        batch.add_column(sa.Column("tokens", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("dollars", sa.Float, nullable=False, server_default="0"))
    conn = op.get_bind()
    experiment = sa.table("experiment", sa.column("id"), sa.column("campaign_id"), sa.column("number"),
                          sa.column("status"), sa.column("tokens"), sa.column("dollars"))
    llmcall = sa.table("llmcall", sa.column("campaign_id"), sa.column("experiment_number"),
                       sa.column("prompt_tokens"), sa.column("completion_tokens"), sa.column("dollars"))
    sums = sa.select(llmcall.c.campaign_id, llmcall.c.experiment_number,
                     sa.func.sum(llmcall.c.prompt_tokens + llmcall.c.completion_tokens), sa.func.sum(llmcall.c.dollars)
                     ).group_by(llmcall.c.campaign_id, llmcall.c.experiment_number)
    for campaign_id, number, tokens, dollars in conn.execute(sums).all():
        # the old column was written when an experiment was recorded: finished ones only
        conn.execute(experiment.update().where(experiment.c.campaign_id == campaign_id, experiment.c.number == number,
                                               experiment.c.status == "done").values(tokens=tokens, dollars=dollars))
    op.drop_index("ix_llmcall_experiment", table_name="llmcall")
