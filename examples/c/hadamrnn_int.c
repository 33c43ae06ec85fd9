/* Run integer-only HadamRNN inference from a generated model header (C99).
 *
 * Build:  cc -std=c99 -O2 -I. -DHADAMRNN_MODEL_HEADER='"hadamrnn_model.h"' \
 *            hadamrnn_int.c -o hadamrnn_int
 * Run:    ./hadamrnn_int [-l] INPUT.txt OUTPUT.txt
 *
 * -l writes the logits lines only (scoring a whole test split: the states of every step of
 * 10000 sequences would fill gigabytes).
 *
 * INPUT (text, written by hadamnp.deploy.export.write_runner_input): "B T d_in", then
 * B*T*d_in integers (sequence-major, then time, then feature), each within the a-bit range.
 * OUTPUT (text, read by hadamnp.deploy.export.read_runner_output): per step a line
 * "h b t h_0 ... h_{n-1}", and per scored step (every step when many-to-many, else the
 * last) a line "logits b t l_0 ... l_{d_out-1}".
 */
#include <stdio.h>
#include <stdlib.h>

#ifndef HADAMRNN_MODEL_HEADER
#define HADAMRNN_MODEL_HEADER "hadamrnn_model.h"
#endif
#include HADAMRNN_MODEL_HEADER
#include "hadamrnn_int.h"

#if HADAMRNN_CONVENTIONS_VERSION != 1
#error "this runner implements hadamnp conventions version 1"
#endif

static int fail(const char *message)
{
    fprintf(stderr, "hadamrnn_int: %s\n", message);
    return 1;
}

int main(int argc, char **argv)
{
    static int32_t h[HADAMRNN_N], work[HADAMRNN_N], logits[HADAMRNN_D_OUT];
    int32_t *x;
    long B, T, d_in, b, t, k;
    FILE *in, *out;
    int i, status = 0, states = 1;

    if (argc == 4 && argv[1][0] == '-' && argv[1][1] == 'l' && argv[1][2] == '\0') {
        states = 0;
        argv++;
        argc--;
    }
    if (argc != 3)
        return fail("usage: hadamrnn_int [-l] INPUT OUTPUT");
    in = fopen(argv[1], "r");
    if (!in)
        return fail("cannot open the input file");
    if (fscanf(in, "%ld %ld %ld", &B, &T, &d_in) != 3 || B < 1 || T < 1) {
        fclose(in);
        return fail("input must start with 'B T d_in' (B, T >= 1)");
    }
    if (d_in != HADAMRNN_D_IN) {
        fclose(in);
        return fail("input d_in does not match the model's HADAMRNN_D_IN");
    }
    x = (int32_t *)malloc(sizeof(int32_t) * (size_t)(T * d_in));
    out = fopen(argv[2], "w");
    if (!x || !out) {
        fclose(in);
        free(x);
        if (out)
            fclose(out);
        return fail("cannot allocate the inputs or open the output file");
    }
    for (b = 0; b < B && status == 0; b++) {
        for (k = 0; k < T * d_in; k++) {
            long v;
            if (fscanf(in, "%ld", &v) != 1 || v < HADAMRNN_ACT_MIN || v > HADAMRNN_ACT_MAX) {
                status = fail("input truncated or a value outside the a-bit range");
                break;
            }
            x[k] = (int32_t)v;
        }
        if (status)
            break;
        for (i = 0; i < HADAMRNN_N; i++)
            h[i] = 0;
        for (t = 0; t < T; t++) {
            hadamrnn_step(h, x + t * d_in, work);
            if (states) {
                fprintf(out, "h %ld %ld", b, t);
                for (i = 0; i < HADAMRNN_N; i++)
                    fprintf(out, " %ld", (long)h[i]);
                fputc('\n', out);
            }
            if (HADAMRNN_MANY_TO_MANY || t == T - 1) {
                hadamrnn_readout(h, logits);
                fprintf(out, "logits %ld %ld", b, t);
                for (i = 0; i < HADAMRNN_D_OUT; i++)
                    fprintf(out, " %ld", (long)logits[i]);
                fputc('\n', out);
            }
        }
    }
    fclose(in);
    free(x);
    if (fclose(out) != 0 && status == 0)
        status = fail("cannot write the output file");
    return status;
}
