"""Model loading (`--model` syntax), official file layouts, checkpoints and stand-ins."""

from .load import LoadedModel, ModelIdentity, ResolvedModel, TolFiles, load_model, resolve_model
from .spec import ModelSpec, parse_model_spec

__all__ = ["LoadedModel", "ModelIdentity", "ModelSpec", "ResolvedModel", "TolFiles", "load_model",
           "parse_model_spec", "resolve_model"]
