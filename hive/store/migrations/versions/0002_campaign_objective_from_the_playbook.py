"""Campaign.objective_metric and Campaign.direction are read from the stored playbook (playbook_json), not kept twice.

The columns always equalled the playbook's objective (open_campaign refuses a resume that changes it before it
stores the new playbook). A row whose playbook lacks an objective, or is not JSON at all, gets the columns'
values written into it first, so nothing the columns held is lost.

Revision ID: 0002
Revises: 0001
Created: 2026-12-02
"""

import json

from alembic import op
import sqlalchemy as sa

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _with_objective(playbook_json: str | None, metric: str, direction: str) -> str | None:
    """The playbook JSON with the objective filled in where it lacks one (None: nothing to change)."""
    try:
        playbook = json.loads(playbook_json or "{}")
    except ValueError:
        playbook = None
    if not isinstance(playbook, dict):  # unreadable: keep the text beside the objective
        return json.dumps({"objective": {"metric": metric, "direction": direction},
                           "unreadable_playbook_json": playbook_json})
    objective = playbook.get("objective")
    if not isinstance(objective, dict):
        objective = playbook["objective"] = {}
    if objective.get("metric") and objective.get("direction"):
        return None
    objective.setdefault("metric", metric)
    objective.setdefault("direction", direction)
    return json.dumps(playbook)


def upgrade() -> None:
    conn = op.get_bind()
    campaign = sa.table("campaign", sa.column("id"), sa.column("playbook_json"), sa.column("objective_metric"),
                        sa.column("direction"))
    for row in conn.execute(sa.select(campaign)).all():
        merged = _with_objective(row.playbook_json, row.objective_metric, row.direction)
        if merged is not None:
            conn.execute(campaign.update().where(campaign.c.id == row.id).values(playbook_json=merged))
    with op.batch_alter_table("campaign") as batch:
        batch.drop_column("objective_metric")
        batch.drop_column("direction")


def downgrade() -> None:
    with op.batch_alter_table("campaign") as batch:
        batch.add_column(sa.Column("objective_metric", sa.String, nullable=False, server_default=""))
        batch.add_column(sa.Column("direction", sa.String, nullable=False, server_default="minimize"))
    conn = op.get_bind()
    campaign = sa.table("campaign", sa.column("id"), sa.column("playbook_json"), sa.column("objective_metric"),
                        sa.column("direction"))
    for row in conn.execute(sa.select(campaign.c.id, campaign.c.playbook_json)).all():
        try:
            objective = (json.loads(row.playbook_json or "{}") or {}).get("objective") or {}
        except (ValueError, AttributeError):
            continue
        conn.execute(campaign.update().where(campaign.c.id == row.id).values(
            objective_metric=objective.get("metric", ""), direction=objective.get("direction", "minimize")))
