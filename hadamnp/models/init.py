"""Parameter initialisers (PyTorch-equivalent distributions, explicit Generator)."""

import numpy as np


def xavier_uniform(rng, shape, dtype):
    """``U(-a, a)`` with ``a = sqrt(6 / (fan_in + fan_out))`` for a ``(fan_out, fan_in)`` matrix."""
    fan_out, fan_in = shape
    a = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-a, a, size=shape).astype(dtype)


def orthogonal(rng, n, dtype):
    """Haar-random orthogonal ``(n, n)`` matrix: QR of a Gaussian, signs fixed by ``diag(R)``."""
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    return (q * np.where(np.diag(r) >= 0, 1.0, -1.0)).astype(dtype)


def uniform_bias(rng, size, fan_in, dtype):
    """PyTorch ``nn.Linear`` bias default ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``."""
    bound = 1.0 / np.sqrt(fan_in)
    return rng.uniform(-bound, bound, size=size).astype(dtype)
