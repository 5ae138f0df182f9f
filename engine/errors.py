"""Errors a user can act on. Their messages are shown to people as they are."""


class EngineError(Exception):
    """Base: something the user can fix; the message says what and how."""


class InvalidInput(EngineError, ValueError):
    """Text or options a model cannot take (empty text, unknown characters, bad ranges)."""


class DataUnavailable(EngineError):
    """A dataset is neither cached nor downloadable."""


class ModelUnavailable(EngineError):
    """No trained model version exists yet, or the one asked for does not."""


class CheckpointError(EngineError):
    """A checkpoint is missing, truncated or fails its checksum."""
