"""Experiment.branch is named from the campaign and the experiment's number where it is shown, not stored.

It was always `hive/<campaign>/baseline` for the baseline and `hive/<campaign>/exp-<number>` for the others, set
together with the commit (hive.workspace.experiment_branch), so nothing is lost.

Revision ID: 0003
Revises: 0002
Created: 2026-12-02
"""

from alembic import op
import sqlalchemy as sa

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("experiment") as batch:
        batch.drop_column("branch")


def downgrade() -> None:
    with op.batch_alter_table("experiment") as batch:
        batch.add_column(sa.Column("branch", sa.String, nullable=False, server_default=""))
    conn = op.get_bind()
    experiment = sa.table("experiment", sa.column("id"), sa.column("campaign_id"), sa.column("number"),
                          sa.column("kind"), sa.column("commit"), sa.column("branch"))
    campaign = sa.table("campaign", sa.column("id"), sa.column("name"))
    names = dict(conn.execute(sa.select(campaign.c.id, campaign.c.name)).all())
    for row in conn.execute(sa.select(experiment).where(experiment.c.commit != "")).all():
        own = "baseline" if row.kind == "baseline" else f"exp-{row.number}"
        conn.execute(experiment.update().where(experiment.c.id == row.id)
                     .values(branch=f"hive/{names[row.campaign_id]}/{own}"))
