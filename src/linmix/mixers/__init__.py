"""Token mixers. Importing this package registers every mixer in :data:`MIXERS`."""
from linmix.mixers.base import Mixer, MixerState, State
from linmix.mixers.registry import (MIXERS, build_mixer, check_mixer_name, mixer_options, register, registered,
                                    unregister)

# One import per mixer module: each registers itself.
from linmix.mixers import summation, aggregation  # noqa: E402,F401
from linmix.mixers import spectral, fnet, topological  # noqa: E402,F401
from linmix.mixers import attention, local_attention, linear_attention  # noqa: E402,F401
from linmix.mixers import window_linear_attention  # noqa: E402,F401

__all__ = ["MIXERS", "Mixer", "MixerState", "State", "build_mixer", "check_mixer_name", "mixer_options", "register",
           "registered", "unregister"]
