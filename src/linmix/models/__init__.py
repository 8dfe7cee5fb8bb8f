"""Models built from mixers: blocks, a causal LM, a classifier and a text+numeric regressor."""
from linmix.models.blocks import Block, FeedForward, SequenceEncoder
from linmix.models.classifier import Classifier
from linmix.models.lm import LanguageModel, sample_next
from linmix.models.multimodal import MultimodalRegressor
from linmix.models.pretrained import load_pretrained
from linmix.models.spec import format_layers, parse_layers

__all__ = ["Block", "Classifier", "FeedForward", "LanguageModel", "MultimodalRegressor", "SequenceEncoder",
           "format_layers", "load_pretrained", "parse_layers", "sample_next"]
