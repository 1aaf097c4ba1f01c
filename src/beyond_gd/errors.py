"""The project's errors: each carries one line a user can act on."""


class BeyondGDError(Exception):
    """Base class: a stage reports it as one line and exits with status 2."""


class ConfigError(BeyondGDError):
    """A params key is missing, unknown, of the wrong type or out of range."""


class DataError(BeyondGDError):
    """A data source is unreachable, or a file is missing or fails its checksum."""
