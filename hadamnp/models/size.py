"""Model-size bookkeeping: parameter count, storage bits and compression ratio.

Storage of a trained HadamRNN (spec/hadamrnn.md, "Model size bookkeeping")::

    bits = p_in·n·d_in (Q(U))  +  p_out·d_out·n (Q(V))  +  n (signs of u)
         + 32·(n + d_out) (float32 b, c)  +  32 per quantized matrix (its scale alpha)

The block pattern of Block-HadamRNN is fixed, so its recurrent matrix also costs ``n`` sign
bits. A dense full-precision ``W`` (baseline) costs ``32·n²``; an unquantized U or V
(``bits = 0``) costs 32 bits per entry and has no scale. The reference for the compression
ratio is the same architecture in float32 with a dense ``n × n`` ``W``::

    float32_bits = 32·(n·d_in + d_out·n + n² + n + d_out)
"""

from dataclasses import dataclass

FLOAT_BITS = 32


@dataclass(frozen=True)
class ModelSize:
    """Size of one model.

    Attributes
    ----------
    parameters : int
        Trainable (latent) values: ``n`` for ``u`` (``n²`` for a dense ``W``), plus U, b, V, c.
    bits : dict[str, int]
        Storage bits per component: ``U``, ``V``, ``W``, ``b``, ``c``, ``alpha``.
    float32_parameters : int
        Values of the float32 reference model with a dense ``W``.
    """

    parameters: int
    bits: dict
    float32_parameters: int

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


def _matrix_bits(entries, bits):
    return entries * (bits if bits > 0 else FLOAT_BITS)


def model_size(config):
    """Parameter count and storage of the model described by ``config``.

    Parameters
    ----------
    config : hadamnp.models.hadamrnn.HadamRNNConfig

    Returns
    -------
    ModelSize

    Examples
    --------
    The paper's copy configuration (10 -> 128 -> 9, 4-bit U, V) takes 14,304 bits.
    """
    n, d_in, d_out = config.hidden_size, config.input_size, config.output_size
    dense = config.recurrent == "dense"
    bits = {
        "U": _matrix_bits(n * d_in, config.bits_in),
        "V": _matrix_bits(d_out * n, config.bits_out),
        "W": FLOAT_BITS * n * n if dense else n,
        "b": FLOAT_BITS * n,
        "c": FLOAT_BITS * d_out,
        "alpha": FLOAT_BITS * ((config.bits_in > 0) + (config.bits_out > 0)),
    }
    parameters = (n * n if dense else n) + n * d_in + n + d_out * n + d_out
    float32_parameters = n * d_in + d_out * n + n * n + n + d_out
    return ModelSize(parameters=parameters, bits=bits, float32_parameters=float32_parameters)
