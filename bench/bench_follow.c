/* Benchmark of flow following (not a test): ns per particle-iteration of cp_follow_run on the
 * ideal flows of flows_protrusions_niter2000, at niter 200 and 2000, with 1 and 2 threads, for
 * the default (AVX2) and the scalar kernel, with the ratio to Cellpose's numba loop (~11 ns per
 * pixel-iteration single-threaded, measured separately: numba is not available here).
 * Usage: bench_follow [shared folder] (default $CELLPOSE_MPI_SHARED or ../shared). */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "follow.h"
#include "testutil.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(int argc, char **argv)
{
    if (argc > 1) setenv("CELLPOSE_MPI_SHARED", argv[1], 1);
    const char *dir = tu_path("%s/reference/flows_protrusions_niter2000", tu_shared());
    tu_tiff dP = tu_read_tiff(tu_path("%s/dP.tif", dir)), cp = tu_read_tiff(tu_path("%s/cellprob.tif", dir));
    const int64_t Ly = cp.ny, Lx = cp.nx, npix = Ly * Lx;
    float *f = malloc(sizeof(float) * (size_t)(2 * npix));
    cp_follow_field(dP.f32, cp.f32, npix, 0.0f, f);
    const int64_t n = cp_follow_particles(cp.f32, Ly, Lx, 0.0f, NULL);
    cp_particle *start = malloc(sizeof *start * (size_t)n), *p = malloc(sizeof *p * (size_t)n);
    cp_follow_particles(cp.f32, Ly, Lx, 0.0f, start);
    const cp_field F = {.Ly = Ly, .Lx = Lx, .y0 = 0, .x0 = 0, .ny = Ly, .nx = Lx, .f = f};
    const double numba_ns = 11.0;
    printf("flows_protrusions_niter2000: %lld x %lld, %lld particles\n", (long long)Ly, (long long)Lx,
           (long long)n);
    printf("%-7s %6s %8s %10s %12s %14s\n", "kernel", "niter", "threads", "seconds", "ns/p-iter",
           "numba/this");
    const char *kernels[2] = {"default", "scalar"};
    for (int k = 0; k < 2; k++) {
        if (k == 1) setenv("CP_FOLLOW_SCALAR", "1", 1);
        for (int niter = 200; niter <= 2000; niter *= 10)
            for (int threads = 1; threads <= 2; threads++) {
                omp_set_num_threads(threads);
                double best = 1e30;
                for (int rep = 0; rep < 3; rep++) { /* best of 3: the machine is shared */
                    memcpy(p, start, sizeof *p * (size_t)n);
                    double t0 = now();
                    cp_follow_run(&F, p, n, niter, 1);
                    double dt = now() - t0;
                    best = dt < best ? dt : best;
                }
                double ns = 1e9 * best / ((double)n * niter);
                printf("%-7s %6d %8d %10.4f %12.3f %14.1f\n", kernels[k], niter, threads, best, ns,
                       numba_ns / ns);
            }
    }
    free(f);
    free(start);
    free(p);
    tu_tiff_free(&dP);
    tu_tiff_free(&cp);
    return 0;
}
