"""Gradient estimators through vector quantization, one registry: `estimators.get(name, **params)`.

See the README's estimator table; each module's docstring gives its formula and paper section.
"""
from . import diveq, exact, gumbel, hessian, ibq, nsvq, reflection, rotation, ste, sync  # noqa: F401  (registers them)
from .base import (EPS, CodebookTransportEstimator, CodeChoice, CodeSample, DecoderAwareEstimator, Estimator,
                   NearestCodeEstimator, Quantized, SamplingEstimator, TransportEstimator)
from .fused import fused_backward_mode, set_fused_backward
from .registry import closest, estimator_class, get, names, parameter_names, register

__all__ = [
    "EPS",
    "CodeChoice",
    "CodebookTransportEstimator",
    "CodeSample",
    "DecoderAwareEstimator",
    "Estimator",
    "NearestCodeEstimator",
    "Quantized",
    "SamplingEstimator",
    "TransportEstimator",
    "closest",
    "estimator_class",
    "fused_backward_mode",
    "get",
    "names",
    "parameter_names",
    "register",
    "set_fused_backward",
]
