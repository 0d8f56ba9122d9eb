"""PullRequest.commit and PullRequest.diff are the kept experiment's (read with the row), not a copy of them.

A pull request was always opened with its experiment's commit and diff, and a finished experiment's never change.
The diff is the experiment's stored text, so it survives even if the repository's objects are lost. Nothing is
dropped that the experiment does not hold: an experiment with no commit or diff gets the pull request's, and a
pull request whose own differs from a non-empty one of its experiment's keeps it at the end of its body.

Revision ID: 0004
Revises: 0003
Created: 2026-12-02
"""

from alembic import op
import sqlalchemy as sa

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

experiment = sa.table("experiment", sa.column("id"), sa.column("campaign_id"), sa.column("number"),
                      sa.column("commit"), sa.column("diff"))
pullrequest = sa.table("pullrequest", sa.column("id"), sa.column("campaign_id"), sa.column("experiment_number"),
                       sa.column("body"), sa.column("commit"), sa.column("diff"))


def upgrade() -> None:
    conn = op.get_bind()
    pairs = sa.select(pullrequest, experiment.c.id.label("exp_id"), experiment.c.commit.label("exp_commit"),
                      experiment.c.diff.label("exp_diff")).select_from(pullrequest.outerjoin(experiment, sa.and_(
                          experiment.c.campaign_id == pullrequest.c.campaign_id,
                          experiment.c.number == pullrequest.c.experiment_number)))
    for row in conn.execute(pairs).all():
        own = {"commit": row.commit, "diff": row.diff}
        its = {"commit": row.exp_commit, "diff": row.exp_diff}
        fill = {k: v for k, v in own.items() if v and not its[k] and row.exp_id is not None}
        if fill:
            conn.execute(experiment.update().where(experiment.c.id == row.exp_id).values(**fill))
        differ = {k: v for k, v in own.items() if v and k not in fill and its[k] != v}
        if differ:
            kept = "\n".join(f"{k}:\n{v}" for k, v in differ.items())
            conn.execute(pullrequest.update().where(pullrequest.c.id == row.id).values(
                body=f"{row.body or ''}\n\n## As this pull request recorded it (before migration 0004)\n\n{kept}\n"))
    with op.batch_alter_table("pullrequest") as batch:
        batch.drop_column("diff")
        batch.drop_column("commit")


def downgrade() -> None:
    with op.batch_alter_table("pullrequest") as batch:
        batch.add_column(sa.Column("diff", sa.Text))
        batch.add_column(sa.Column("commit", sa.String, nullable=False, server_default=""))
    conn = op.get_bind()
    for pr_id, commit, diff in conn.execute(
            sa.select(pullrequest.c.id, experiment.c.commit, experiment.c.diff).select_from(pullrequest.join(
                experiment, sa.and_(experiment.c.campaign_id == pullrequest.c.campaign_id,
                                    experiment.c.number == pullrequest.c.experiment_number)))).all():
        conn.execute(pullrequest.update().where(pullrequest.c.id == pr_id).values(commit=commit, diff=diff))
