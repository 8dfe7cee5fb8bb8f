"""Models built from mixers: blocks, a causal LM, a classifier and a text+numeric regressor."""
from linmix.models.blocks import Block, FeedForward, SequenceEncoder
from linmix.models.classifier import Classifier
from linmix.models.lm import LanguageModel, sample_next
from linmix.models.multimodal import MultimodalRegressor
from linmix.models.pretrained import build_model, load_pretrained
from linmix.models.spec import LayerSpec, format_layers, parse_layer_specs, parse_layers

__all__ = ["Block", "Classifier", "FeedForward", "LanguageModel", "LayerSpec", "MultimodalRegressor",
           "SequenceEncoder", "build_model", "format_layers", "load_pretrained", "parse_layer_specs", "parse_layers",
           "sample_next"]
