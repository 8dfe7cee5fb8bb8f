"""linmix: sub-quadratic token mixers, the models built from them, and honest benchmarks against attention."""
from linmix.mixers import MIXERS, Mixer, build_mixer
from linmix.models import (Block, Classifier, LanguageModel, MultimodalRegressor, load_pretrained,
                           parse_layers)

__version__ = "0.1.0"

__all__ = ["MIXERS", "Block", "Classifier", "LanguageModel", "Mixer", "MultimodalRegressor", "__version__",
           "build_mixer", "load_pretrained", "parse_layers"]
