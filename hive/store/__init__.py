"""The store: every fact about every campaign, in SQLite or any SQLAlchemy database."""

from hive.store.engine import database_url, make_engine
from hive.store.models import Attempt, Campaign, Event, Experiment, LlmCall, Lesson, PullRequest, Run, Transcript
from hive.store.queries import Store

__all__ = ["Attempt", "Campaign", "Event", "Experiment", "LlmCall", "Lesson", "PullRequest", "Run", "Store", "Transcript", "database_url", "make_engine"]
