"""Campaign.harness_sha256: the content hash of the harness snapshot taken when the campaign was created.

Every scoring copies the snapshot and checks the copy against this hash, so a scorer never runs from files a run
could have changed, and never from a git ref a run could have moved. A campaign made before this revision gets
its hash at its next start, from a snapshot of its stored baseline commit.

Revision ID: 0006
Revises: 0005
Created: 2026-12-02
"""

from alembic import op
import sqlalchemy as sa

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("campaign") as batch:
        batch.add_column(sa.Column("harness_sha256", sa.String, nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("campaign") as batch:
        batch.drop_column("harness_sha256")
