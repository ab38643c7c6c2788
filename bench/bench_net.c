/* Benchmark of the CPnet forward (not a test): seconds per tile and GFLOP/s of cp_net_forward
 * at 1 and 2 OpenMP threads, for one model and tile size.
 * usage: bench_net [model.pth] [tile] [batch] [repeats] [threads]
 * (defaults: ../shared/models/random_cp3_seed0.pth, 224, 2, 2, both 1 and 2; threads = 1 or 2
 * measures that count only). Prints how many 3x3 convs run as Winograd (CP_NET_CONV=im2col in the
 * environment turns it off). Reports the OpenBLAS kernel in
 * use: on CPUs OpenBLAS 0.3.21 does not know, set OPENBLAS_CORETYPE (e.g. SkylakeX, Haswell). */
#include "cp_err.h"
#include "cpnet.h"
#include "winograd.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

char *openblas_get_corename(void);

static double clock_s(clockid_t id)
{
    struct timespec t;
    clock_gettime(id, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static double now(void) { return clock_s(CLOCK_MONOTONIC); }

/* Multiply-adds x 2 of one tile of ty x tx (3x3 and 1x1 convolutions, §3.2). */
static double tile_flops(const cp_model_info *in, int ty, int tx)
{
    const int *nb = in->nbase;
    const int up[5] = {nb[1], nb[2], nb[3], nb[4], nb[4]};
    double f = 0;
    for (int n = 0; n < 4; n++) {
        const double P = (double)(ty >> n) * (tx >> n);
        f += P * (9.0 * nb[n] * nb[n + 1] + 27.0 * nb[n + 1] * nb[n + 1] + nb[n] * nb[n + 1]);
        f += P * (9.0 * up[n + 1] * up[n] + 27.0 * up[n] * up[n] + up[n + 1] * up[n]);
    }
    f += (double)ty * tx * nb[1] * in->nout;
    return 2 * f;
}

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : "../shared/models/random_cp3_seed0.pth";
    const int tile = argc > 2 ? atoi(argv[2]) : 224, batch = argc > 3 ? atoi(argv[3]) : 2;
    const int reps = argc > 4 ? atoi(argv[4]) : 2, only = argc > 5 ? atoi(argv[5]) : 0;
    char err[CP_ERR_LEN];
    cp_model *m;
    if (cp_model_load(path, &m, err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    const cp_model_info *in = cp_model_get_info(m);
    const int64_t in_n = (int64_t)in->nchan * tile * tile, out_n = (int64_t)in->nout * tile * tile;
    float *x = malloc((size_t)(in_n * batch) * sizeof(float));
    float *y = malloc((size_t)(out_n * batch) * sizeof(float));
    for (int64_t k = 0; k < in_n * batch; k++)
        x[k] = (float)((k * 2654435761u) % 1000) / 500.0f - 1.0f;
    const double gf = tile_flops(in, tile, tile) * 1e-9;
    printf("model %s nbase [%d %d %d %d %d], tile %d, %.2f GFLOP/tile, OpenBLAS core %s, "
           "convs: %d of %d 3x3 as Winograd F(4x4,3x3) (transforms: %s copy), the rest im2col + "
           "sgemm\n", path,
           in->nbase[0], in->nbase[1], in->nbase[2], in->nbase[3], in->nbase[4], tile, gf,
           openblas_get_corename(), cp_model_winograd_convs(m), 32,
           cp_wino_isa_name(cp_wino_isa_default()));
    for (int threads = only ? only : 1; threads <= (only ? only : 2); threads++) {
        omp_set_num_threads(threads);
        cp_net_forward(m, x, 1, tile, tile, y, NULL, err); /* warm-up */
        double best = 1e30, cpu = 1e30;
        for (int r = 0; r < reps; r++) {
            const double c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID), t0 = now();
            if (cp_net_forward(m, x, batch, tile, tile, y, NULL, err)) {
                fprintf(stderr, "%s\n", err);
                return 1;
            }
            const double dt = (now() - t0) / batch;
            const double dc = (clock_s(CLOCK_PROCESS_CPUTIME_ID) - c0) / batch;
            best = dt < best ? dt : best;
            cpu = dc < cpu ? dc : cpu;
        }
        /* CPU seconds (all threads, spinning included) tell a loaded machine from a slow code */
        printf("threads %d, batch %d: %.3f s/tile, %.1f GFLOP/s (%.3f CPU s/tile)\n", threads,
               batch, best, gf / best, cpu);
    }
    free(x);
    free(y);
    cp_model_free(m);
    return 0;
}
