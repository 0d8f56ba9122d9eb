"""The Hive terminal UI (Textual): watch a campaign, open experiments, review pull requests."""
