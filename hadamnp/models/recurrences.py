"""Recurrent matrices of HadamRNN-style models, as small objects registered by name.

A recurrence owns the recurrent parameter(s) of a model and everything that depends on
their structure: initialisation, the effective (quantized) matrix, the dense matrix for
the reference path, and the sequence-kernel calls of the forward and backward passes.
The model (:mod:`hadamnp.models.hadamrnn`) holds one and never branches on its kind.

==============  =====================================================  ====================
name            recurrent matrix                                       parameters (role)
==============  =====================================================  ====================
``hadamard``    ``W = diag(Q(u)) (I_{n/m} ⊗ S_m) / sqrt(m)``, ``Q``     ``u`` (n,) (signs)
                a sign quantizer; binary (m = n) or sparse ternary
``dense``       ``W = Q(W_latent)``, any ``(n, n)`` matrix (baseline)  ``W`` (n, n) (weight)
==============  =====================================================  ====================

Interface (``kernels`` is :mod:`hadamnp.kernels.recurrence` or its reference twin
:mod:`hadamnp.reference.recurrence`; ``xk`` is the kernel-layout input ``(T, d_in, B)``)::

    rec.param_specs()                     {name: ParamSpec}
    rec.init(rng, dtype)                  {name: array}
    rec.effective(params, rng)            {weight name: array}, e.g. {"W_signs": s}
    rec.matrix(eff)                       dense (n, n) W (reference path, tests)
    rec.forward(kernels, eff, U, b, V, c, xk, **options)   -> (h, logits)
    rec.backward(kernels, params, eff, U, V, xk, h, g, nonlinear, input_grad,
                 store_every, b)          -> grads (own + U, b, V, c, and x if input_grad)
    rec.bits()                            {"W": storage bits}, plus ``scale_bits()``
    rec.weights                           its :class:`~hadamnp.models.weights.Weight`
                                          objects (``()`` for the Hadamard recurrence)
"""

import numpy as np

from hadamnp._checks import check_block_size
from hadamnp.errors import ConfigError
from hadamnp.models.init import orthogonal
from hadamnp.models.protocol import ParamSpec
from hadamnp.models.quantizers import Sign
from hadamnp.models.weights import Weight
from hadamnp.reference.recurrence import hadamard_matrix

__all__ = ["HadamardRecurrence", "DenseRecurrence", "RECURRENCES", "make_recurrence"]


class HadamardRecurrence:
    """``W = diag(s) (I_{n/m} ⊗ S_m) / sqrt(m)``, ``s = Q(u)`` in {-1, +1}.

    Parameters
    ----------
    n : int, hidden size (power of two)
    m : int, block size (power of two dividing ``n``; ``n`` for the full HadamRNN)
    quantizer : a sign quantizer (:class:`~hadamnp.models.quantizers.Sign`): the matrix
        must stay orthogonal, so only ±1 outputs are allowed.
    """

    name = "hadamard"
    weights = ()  # the latent signs u are not a Weight: the block pattern is fixed

    def __init__(self, n, m, quantizer):
        if not isinstance(quantizer, Sign):
            raise ConfigError(f"the Hadamard recurrence needs a sign quantizer for u "
                              f"(quant_rec 'sign' or 'sign:clipped'), got {quantizer.name!r}")
        self.n, self.m = n, check_block_size(n, m)
        self.quantizer = quantizer

    def param_specs(self):
        # The latent signs are clipped to [-1, 1] when the run clips the role (BinaryConnect).
        return {"u": ParamSpec((self.n,), "signs", bound=1.0)}

    def init(self, rng, dtype):
        """``u ~ U(-a, a)``, ``a = sqrt(6/(n+1))`` (only its signs matter)."""
        a = np.sqrt(6.0 / (self.n + 1))
        return {"u": rng.uniform(-a, a, size=self.n).astype(dtype)}

    def effective(self, params, rng=None):
        return {"W_signs": self.quantizer.forward(params["u"], rng)}

    def matrix(self, eff):
        return hadamard_matrix(eff["W_signs"], self.m)

    def forward(self, kernels, eff, U, b, V, c, xk, **options):
        return kernels.hadamard_forward(eff["W_signs"], self.m, U, b, V, c, xk, **options)

    def backward(self, kernels, params, eff, U, V, xk, h, g, nonlinear, input_grad=False,
                 store_every=1, b=None):
        grads = kernels.hadamard_backward(eff["W_signs"], self.m, U, V, xk, h, g,
                                          nonlinear=nonlinear, input_grad=input_grad,
                                          store_every=store_every, b=b)
        grads["u"] = self.quantizer.backward(params["u"], grads.pop("s"))
        return grads

    def bits(self):
        """``n`` sign bits: the block pattern is fixed, only the signs are stored."""
        return {"W": self.quantizer.code_bits(self.n)}

    def scale_bits(self):
        return self.quantizer.scale_bits()

    def describe(self):
        return {"kind": self.name, "m": self.m,
                "matrix": "binary" if self.m == self.n else f"block-ternary ({self.n // self.m} "
                                                            f"blocks of {self.m})"}


class DenseRecurrence:
    """A dense recurrent matrix ``W = Q(P(theta))``: a :class:`~hadamnp.models.weights.Weight`
    (full precision with ``Q = none`` and the dense parametrization).

    Parameters
    ----------
    n : int, hidden size
    quantizer : any registered quantizer
    """

    name = "dense"

    def __init__(self, n, quantizer):
        self.n = n
        # depth 1: between the input matrix U (0) and the readout V (2) of the model
        self.weight = Weight("W", (n, n), _orthogonal_init, quantizer=quantizer, depth=1)
        self.weights = (self.weight,)

    def param_specs(self):
        return self.weight.param_specs()

    def init(self, rng, dtype):
        """Haar-random orthogonal ``W``."""
        return self.weight.init(rng, dtype)

    def effective(self, params, rng=None):
        return {"W_q": self.weight.effective(params, rng)}

    def matrix(self, eff):
        return eff["W_q"]

    def forward(self, kernels, eff, U, b, V, c, xk, *, store_every=1, **options):
        # store_every > 1 is refused by the configuration for the dense recurrence.
        return kernels.dense_forward(eff["W_q"], U, b, V, c, xk, **options)

    def backward(self, kernels, params, eff, U, V, xk, h, g, nonlinear, input_grad=False,
                 store_every=1, b=None):
        grads = kernels.dense_backward(eff["W_q"], U, V, xk, h, g, nonlinear=nonlinear,
                                       input_grad=input_grad)
        grads.update(self.weight.backward(params, grads.pop("W")))
        return grads

    def bits(self):
        return {"W": self.weight.code_bits()}

    def scale_bits(self):
        return self.weight.scale_bits()

    def describe(self):
        return {"kind": self.name}


def _orthogonal_init(rng, shape, dtype):
    return orthogonal(rng, shape[0], dtype)


def _hadamard(config, quantizer):
    return HadamardRecurrence(config.hidden_size, config.block_size, quantizer)


def _dense(config, quantizer):
    return DenseRecurrence(config.hidden_size, quantizer)


# name -> (factory(config, quantizer), default quantizer spec of the recurrent parameter)
RECURRENCES = {"hadamard": (_hadamard, "sign"), "dense": (_dense, "none")}


def make_recurrence(config, quantizer):
    """The recurrence named by ``config.recurrence`` (a key of :data:`RECURRENCES`)."""
    if config.recurrence not in RECURRENCES:
        raise ConfigError(f"unknown recurrence {config.recurrence!r}; choose one of "
                          f"{', '.join(RECURRENCES)}")
    return RECURRENCES[config.recurrence][0](config, quantizer)
