"""linmix: sub-quadratic token mixers, the models built from them, and honest benchmarks against attention."""
from linmix.config import CompareConfig, DataConfig, ModelConfig, OptimConfig, RunConfig, TrainConfig
from linmix.convert import ConversionReport, convert
from linmix.mixers import MIXERS, Mixer, build_mixer
from linmix.models import (Block, Classifier, LanguageModel, MultimodalRegressor, build_model, load_pretrained,
                           parse_layer_specs, parse_layers)

__version__ = "0.1.0"

__all__ = ["MIXERS", "Block", "Classifier", "CompareConfig", "ConversionReport", "DataConfig", "LanguageModel", "Mixer",
           "ModelConfig", "MultimodalRegressor", "OptimConfig", "RunConfig", "TrainConfig", "__version__", "build_mixer",
           "build_model", "convert", "load_pretrained", "parse_layer_specs", "parse_layers"]
