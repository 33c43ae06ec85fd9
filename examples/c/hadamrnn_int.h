/* Integer-only HadamRNN inference runtime (C99), the integer scheme of hadamnp
 * (Python twins: hadamnp.reference.integer and hadamnp.kernels.integer, which it matches
 * bit for bit).
 *
 * Include the generated model header (hadamnp export --format c) before this file.
 * One step, all integers (h_0 = 0):
 *   z      = FWHT_m(h)                     exact int32 adds, |z| <= m 2^(a-1)
 *   z      = s * z                         sign bit set -> negate
 *   u      = U_int x                       int32
 *   acc    = M_REC z + M_IN u + b_fine     int64, one accumulator
 *   h      = sat_a(floor((acc + 2^(Q-1)) / 2^Q))   the step's only rounding (half up)
 *   logits = V_int relu(h) + c_int         int32
 * The exporter checked every bound (z, u, the readout in int32; |acc| + 2^(Q-1) in
 * int64), so nothing here can overflow. When m = 4^k, M_REC is a power of two and the
 * compiler turns the constant multiply into a shift.
 */
#ifndef HADAMRNN_INT_H
#define HADAMRNN_INT_H

#include <stdint.h>

#define HADAMRNN_ACT_MAX ((int32_t)((INT32_C(1) << (HADAMRNN_A - 1)) - 1))
#define HADAMRNN_ACT_MIN ((int32_t)(-(INT32_C(1) << (HADAMRNN_A - 1))))

#if HADAMRNN_Q < 1 || HADAMRNN_Q > 62
#error "HADAMRNN_Q must lie in [1, 62] (regenerate the model header with hadamnp export)"
#endif

/* floor(v / 2^q). Right-shifting a negative value is implementation-defined in C99, so
 * negative values are shifted as non-negative ones: floor(v/2^q) = -floor((-v-1)/2^q) - 1. */
static int64_t hadamrnn_floor_shift(int64_t v, int q)
{
    return v >= 0 ? (v >> q) : -((-v - 1) >> q) - 1;
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
        int32_t u = 0;
        int64_t acc, v;
        for (j = 0; j < HADAMRNN_D_IN; j++)
            u += (int32_t)hadamrnn_U_int[i * HADAMRNN_D_IN + j] * x[j];
        acc = (int64_t)z * HADAMRNN_M_REC + (int64_t)u * HADAMRNN_M_IN + hadamrnn_b_fine[i];
        v = hadamrnn_floor_shift(acc + ((int64_t)1 << (HADAMRNN_Q - 1)), HADAMRNN_Q);
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
