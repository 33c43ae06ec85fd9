"""Model-size bookkeeping: parameter counts, storage bits and compression ratio.

Every model reports a :class:`ModelSize` (``model.size()``): the storage bits of each of
its components as deployed (quantized codes at their bit width, float32 otherwise, plus
the scales stored beside the codes), its parameter counts, and the values of the
*float32 reference*: the same architecture with full-precision dense matrices, which
defines the compression ratio ``float32_bits / total_bits``.

For HadamRNN (see :meth:`hadamnp.models.hadamrnn.HadamRNN.size`)::

    bits = p_in·n·d_in (Q(U))  +  p_out·d_out·n (Q(V))  +  n (signs of u)
         + 32·(n + d_out) (float32 b, c)  +  32 per quantized matrix (its scale alpha)
    float32_bits = 32·(n·d_in + d_out·n + n² + n + d_out)
"""

from dataclasses import dataclass, field

FLOAT_BITS = 32

__all__ = ["FLOAT_BITS", "ModelSize"]


@dataclass(frozen=True)
class ModelSize:
    """Size of one model.

    Attributes
    ----------
    parameters : int
        Latent values the model stores while training (every parameter array).
    trainable : int
        Of those, the values the optimizer updates (role other than ``frozen``).
    bits : dict[str, int]
        Deployed storage bits per component (e.g. ``U``, ``V``, ``W``, ``b``, ``c``,
        ``alpha`` for HadamRNN).
    float32_parameters : int
        Values of the float32 reference model (full-precision dense matrices).
    matrices : dict[str, dict], optional
        Per weight matrix: ``shape``, ``parametrization``, ``parameters`` (values it stores
        itself), ``dense`` (its entries, ``m n``) and ``shared`` (the shared parameters it
        reads); a shared parameter has its own entry with ``readers``
        (:func:`hadamnp.models.weights.matrix_table`). Shown by ``hadamnp info``.
    """

    parameters: int
    trainable: int
    bits: dict
    float32_parameters: int
    matrices: dict = field(default_factory=dict)

    @property
    def total_bits(self):
        return sum(self.bits.values())

    @property
    def float32_bits(self):
        return FLOAT_BITS * self.float32_parameters

    @property
    def compression_ratio(self):
        """``float32_bits / total_bits``."""
        return self.float32_bits / self.total_bits

    def to_dict(self):
        """JSON-friendly summary (counts, bits per component, totals, ratio)."""
        return {"parameters": self.parameters, "trainable": self.trainable,
                "bits": dict(self.bits), "total_bits": self.total_bits,
                "float32_parameters": self.float32_parameters,
                "float32_bits": self.float32_bits,
                "compression_ratio": self.compression_ratio,
                **({"matrices": self.matrices} if self.matrices else {})}
