"""The project's errors: each carries one line a user can act on."""

import signal


class BeyondGDError(Exception):
    """Base class: a stage reports it as one line and exits with status 2."""


class ConfigError(BeyondGDError):
    """A params key is missing, unknown, of the wrong type or out of range."""


class DataError(BeyondGDError):
    """A data source is unreachable, or a file is missing or fails its checksum."""


class Interrupted(BaseException):
    """The process got a termination signal (SIGTERM from `kill` or a scheduler); raised from its handler
    so that open runs end as KILLED and no partial output is left. A BaseException, as KeyboardInterrupt."""

    def __init__(self, signal: str) -> None:
        super().__init__(f"interrupted by {signal}")
        self.signal = signal


def raise_interrupted(signum: int, _frame: object) -> None:
    """A SIGTERM handler: unwind like KeyboardInterrupt, so runs end KILLED and work folders go."""
    raise Interrupted(signal.Signals(signum).name)
