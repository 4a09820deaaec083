"""User-facing errors: one line naming the problem and the fix, never a deep traceback."""


class JakiroError(Exception):
    """Base class for every error this library raises on bad input or configuration."""


class ConfigError(JakiroError, ValueError):
    """An argument or configuration value is invalid."""


class CheckpointError(JakiroError):
    """A draft checkpoint is missing, corrupt, or does not fit the base model."""


class ContextLengthError(JakiroError, ValueError):
    """The prompt plus the requested generation does not fit the model's context."""
