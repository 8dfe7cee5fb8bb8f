"""Synthetic token tasks (no files needed): passkey retrieval, multi-query associative recall (MQAR)."""
from linmix.data.synthetic.mqar import MQARConfig, make_mqar
from linmix.data.synthetic.passkey import PasskeyConfig, digit_accuracy, make_passkey

__all__ = ["MQARConfig", "PasskeyConfig", "digit_accuracy", "make_mqar", "make_passkey"]
