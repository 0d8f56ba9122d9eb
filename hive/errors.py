"""Exceptions that carry meaning: the CLI maps them to exit codes, the driver to outcomes."""


class HiveError(Exception):
    """Base class for errors Hive raises on purpose."""


class BadInput(HiveError):
    """A user mistake (playbook field, argument, unknown campaign): one line, exit code 2."""


class EditRejected(HiveError):
    """A proposed change cannot be applied or touches files it must not."""


class RunTimedOut(HiveError):
    """A run passed its wall-clock limit (`run.timeout`) and the executor killed it; the seed's outcome is 'timeout'."""


class BudgetExhausted(HiveError):
    """The campaign's experiment, time or dollar budget is spent."""


class ModelUnreachable(HiveError):
    """A model cannot answer at all (bad key, no such model, quota spent): the campaign stops, nothing is retried."""
