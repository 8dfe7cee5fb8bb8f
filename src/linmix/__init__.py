"""linmix: sub-quadratic token mixers, the models built from them, and honest benchmarks against attention."""
from linmix.mixers import MIXERS, Mixer, build_mixer

__version__ = "0.1.0"

__all__ = ["MIXERS", "Mixer", "build_mixer", "__version__"]
