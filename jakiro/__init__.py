"""jakiro: lossless speculative decoding (Jakiro, Jakiro*, Kangaroo) on native `transformers` models."""

from .base_models import DEFAULT_BASE_MODEL, load_base_model
from .errors import CheckpointError, ConfigError, ContextLengthError, JakiroError
from .version import __version__


def __getattr__(name):
    # EaModel pulls in the whole engine; import it lazily so light commands start fast.
    if name == "EaModel":
        from .model.ea_model import EaModel

        return EaModel
    raise AttributeError(name)


__all__ = ["EaModel", "load_base_model", "DEFAULT_BASE_MODEL", "JakiroError", "ConfigError", "CheckpointError",
           "ContextLengthError", "__version__"]
