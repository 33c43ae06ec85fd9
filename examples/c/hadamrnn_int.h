/* Integer-only HadamRNN inference runtime (C99), the reference scheme of hadamnp
 * (shared/spec/integer-inference.md; Python twins: hadamnp.reference.integer and
 * hadamnp.kernels.integer, which it matches bit for bit).
 *
 * Include the generated model header (hadamnp export --format c) before this file.
 * One step, all integers (h_0 = 0):
 *   z      = FWHT_m(h)                     exact int32 adds, |z| <= m 2^(a-1)
 *   z      = s * z                         sign bit set -> negate
 *   h      = sat_a(mul_round(z, M_REC, Q_REC) + mul_round(U_int x, M_IN, Q_IN) + b_int)
 *   logits = V_int relu(h) + c_int
 * with mul_round(v, M, q) = floor((v M + 2^(q-1)) / 2^q) in 64-bit (the 2^(q-1) term is
 * 0 when q = 0). The exporter checked every int32 bound, so nothing here can overflow.
 * When HADAMRNN_REC_SHIFT / HADAMRNN_IN_SHIFT is 1 the multiplier is a power of two and
 * the compiler turns the constant multiply into a shift (or nothing, for M = 1).
 */
#ifndef HADAMRNN_INT_H
#define HADAMRNN_INT_H

#include <stdint.h>

#define HADAMRNN_ACT_MAX ((int32_t)((INT32_C(1) << (HADAMRNN_A - 1)) - 1))
#define HADAMRNN_ACT_MIN ((int32_t)(-(INT32_C(1) << (HADAMRNN_A - 1))))

/* floor(v / 2^q). Right-shifting a negative value is implementation-defined in C99, so
 * negative values are shifted as non-negative ones: floor(v/2^q) = -floor((-v-1)/2^q) - 1. */
static int64_t hadamrnn_floor_shift(int64_t v, int q)
{
    return v >= 0 ? (v >> q) : -((-v - 1) >> q) - 1;
}

static int64_t hadamrnn_mul_round(int64_t v, int64_t M, int q)
{
    int64_t half = q > 0 ? ((int64_t)1 << (q - 1)) : 0;
    return hadamrnn_floor_shift(v * M + half, q);
}

/* Unnormalised Sylvester FWHT of a[0..n), independently per block of m. */
static void hadamrnn_fwht(int32_t *a, int n, int m)
{
    int h, start, i;
    for (h = 1; h < m; h *= 2) {
        for (start = 0; start < n; start += 2 * h) {
            for (i = start; i < start + h; i++) {
                int32_t x = a[i], y = a[i + h];
                a[i] = x + y;
                a[i + h] = x - y;
            }
        }
    }
}

/* One step: h (n,) is replaced by h_t given x_t (d_in,); work is scratch of n int32. */
static void hadamrnn_step(int32_t *h, const int32_t *x, int32_t *work)
{
    int i, j;
    for (i = 0; i < HADAMRNN_N; i++)
        work[i] = h[i];
    hadamrnn_fwht(work, HADAMRNN_N, HADAMRNN_M);
    for (i = 0; i < HADAMRNN_N; i++) {
        int negative = (int)((hadamrnn_sign_bits[i / 64] >> (i % 64)) & 1u);
        int32_t z = negative ? -work[i] : work[i];
        int32_t acc = 0;
        int64_t v;
        for (j = 0; j < HADAMRNN_D_IN; j++)
            acc += (int32_t)hadamrnn_U_int[i * HADAMRNN_D_IN + j] * x[j];
        v = hadamrnn_mul_round(z, HADAMRNN_M_REC, HADAMRNN_Q_REC)
            + hadamrnn_mul_round(acc, HADAMRNN_M_IN, HADAMRNN_Q_IN)
            + hadamrnn_b_int[i];
        h[i] = v > HADAMRNN_ACT_MAX ? HADAMRNN_ACT_MAX
             : v < HADAMRNN_ACT_MIN ? HADAMRNN_ACT_MIN : (int32_t)v;
    }
}

/* logits (d_out,) = V_int relu(h) + c_int. */
static void hadamrnn_readout(const int32_t *h, int32_t *logits)
{
    int o, i;
    for (o = 0; o < HADAMRNN_D_OUT; o++) {
        int32_t acc = hadamrnn_c_int[o];
        for (i = 0; i < HADAMRNN_N; i++)
            if (h[i] > 0)
                acc += (int32_t)hadamrnn_V_int[o * HADAMRNN_N + i] * h[i];
        logits[o] = acc;
    }
}

#endif /* HADAMRNN_INT_H */
