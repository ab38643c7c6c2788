/* Benchmark of flow following (not a test): ns per particle-iteration of cp_follow_run for each
 * kernel the CPU has, with 1 and 2 threads, and the ratio to Cellpose's numba loop (~11 ns per
 * pixel-iteration single-threaded, measured separately: numba is not available here), from the
 * wall time and from the process CPU time / threads (what the wall time would be on an idle
 * machine with perfect scaling; the shared machine makes the wall time noisy). A particle ends
 * early at a 2-cycle or fixed point (follow.h), so a run executes fewer iterations than the
 * nominal particles * niter: the share executed is printed per case, and the last column is the
 * wall time per executed iteration (the raw cost of the kernel). Cases:
 *   small  the ideal flows of flows_protrusions_niter2000 (512^2, few particles), niter 2000;
 *   synth  the network flows of synth_trained_nbase16_synth512 (512^2), niter 200;
 *   large  those network flows tiled 4 x 4 into a 2048^2 field, niter 200.
 * Usage: bench_follow [shared folder] (default $CELLPOSE_MPI_SHARED or ../shared). */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "follow.h"
#include "testutil.h"

static double now(clockid_t clock)
{
    struct timespec t;
    clock_gettime(clock, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* dP (2 planes) and cellprob of a reference case, tiled k x k. */
static void load_tiled(const char *name, int k, float **dP, float **cp, int64_t *Ly, int64_t *Lx)
{
    const char *dir = tu_path("%s/reference/%s", tu_shared(), name);
    tu_tiff d = tu_read_tiff(tu_path("%s/dP.tif", dir)), c = tu_read_tiff(tu_path("%s/cellprob.tif", dir));
    const int64_t ny = c.ny, nx = c.nx;
    *Ly = k * ny, *Lx = k * nx;
    *dP = malloc(sizeof(float) * (size_t)(2 * *Ly * *Lx));
    *cp = malloc(sizeof(float) * (size_t)(*Ly * *Lx));
    for (int64_t y = 0; y < *Ly; y++)
        for (int64_t x = 0; x < *Lx; x++) {
            const int64_t i = y * *Lx + x, s = (y % ny) * nx + x % nx;
            (*cp)[i] = c.f32[s];
            (*dP)[i] = d.f32[s];
            (*dP)[*Ly * *Lx + i] = d.f32[ny * nx + s];
        }
    tu_tiff_free(&d);
    tu_tiff_free(&c);
}

/* The iterations that one cp_follow_run call of niter steps executes on particles `start`: each
 * particle's until the first step that brings it back to where it was before the previous step
 * (or, the first step, to where it was). Found by advancing all particles one step per call. */
static int64_t executed_iterations(const cp_field *F, const cp_particle *start, int64_t n, int niter)
{
    cp_particle *p = malloc(sizeof *p * (size_t)n);
    uint64_t *back = malloc(sizeof *back * (size_t)n), *now = malloc(sizeof *now * (size_t)n);
    char *ended = calloc((size_t)n, 1);
    memcpy(p, start, sizeof *p * (size_t)n);
    for (int64_t i = 0; i < n; i++) memcpy(&back[i], &p[i].py, sizeof back[i]); /* (py, px) */
    int64_t total = 0;
    for (int s = 1; s <= niter; s++) {
        for (int64_t i = 0; i < n; i++) memcpy(&now[i], &p[i].py, sizeof now[i]);
        cp_follow_run(F, p, n, s, 1);
        for (int64_t i = 0; i < n; i++) {
            uint64_t next;
            memcpy(&next, &p[i].py, sizeof next);
            total += !ended[i];
            ended[i] |= next == back[i];
            back[i] = now[i];
        }
    }
    free(p);
    free(back);
    free(now);
    free(ended);
    return total;
}

static void bench_case(const char *label, const char *name, int tiles, int niter)
{
    float *dP, *cp;
    int64_t Ly, Lx;
    load_tiled(name, tiles, &dP, &cp, &Ly, &Lx);
    const int64_t npix = Ly * Lx;
    float *f = malloc(sizeof(float) * (size_t)(2 * npix));
    cp_follow_field(dP, cp, npix, 0.0f, f);
    const int64_t n = cp_follow_particles(cp, Ly, Lx, 0.0f, NULL);
    cp_particle *start = malloc(sizeof *start * (size_t)n), *p = malloc(sizeof *p * (size_t)n);
    cp_follow_particles(cp, Ly, Lx, 0.0f, start);
    const cp_field F = {.Ly = Ly, .Lx = Lx, .y0 = 0, .x0 = 0, .ny = Ly, .nx = Lx, .f = f};
    const int64_t executed = executed_iterations(&F, start, n, niter);
    printf("%s: %s x%d: %lld x %lld, %lld particles, niter %d, iterations executed %.1f%%\n", label,
           name, tiles, (long long)Ly, (long long)Lx, (long long)n, niter,
           100.0 * (double)executed / ((double)n * niter));
    const char *kernels[3] = {"scalar", "avx2", "avx512"};
    for (int k = 0; k < 3; k++) {
        setenv("CP_FOLLOW_KERNEL", kernels[k], 1);
        if (strcmp(cp_follow_kernel(&F, 1), kernels[k]) != 0) continue; /* not on this CPU */
        for (int threads = 1; threads <= 2; threads++) {
            omp_set_num_threads(threads);
            double best = 1e30, best_cpu = 1e30;
            for (int rep = 0; rep < (k ? 3 : 1); rep++) { /* best of 3: the machine is shared */
                memcpy(p, start, sizeof *p * (size_t)n);
                double t0 = now(CLOCK_MONOTONIC), c0 = now(CLOCK_PROCESS_CPUTIME_ID);
                cp_follow_run(&F, p, n, niter, 1);
                double dt = now(CLOCK_MONOTONIC) - t0, dc = (now(CLOCK_PROCESS_CPUTIME_ID) - c0) / threads;
                best = dt < best ? dt : best;
                best_cpu = dc < best_cpu ? dc : best_cpu;
            }
            double ns = 1e9 * best / ((double)n * niter), ns_cpu = 1e9 * best_cpu / ((double)n * niter);
            printf("  %-7s %8d %10.4f %12.3f %14.1f %12.3f %14.1f %14.3f\n", kernels[k], threads, best,
                   ns, 11.0 / ns, ns_cpu, 11.0 / ns_cpu, 1e9 * best / (double)executed);
        }
    }
    unsetenv("CP_FOLLOW_KERNEL");
    free(f);
    free(start);
    free(p);
    free(dP);
    free(cp);
}

int main(int argc, char **argv)
{
    if (argc > 1) setenv("CELLPOSE_MPI_SHARED", argv[1], 1);
    printf("  %-7s %8s %10s %12s %14s %12s %14s %14s\n", "kernel", "threads", "wall s", "ns/p-iter",
           "11ns/this", "cpu/threads", "11ns/this", "ns/executed");
    bench_case("small", "flows_protrusions_niter2000", 1, 2000);
    bench_case("synth", "synth_trained_nbase16_synth512", 1, 200);
    bench_case("large", "synth_trained_nbase16_synth512", 4, 200);
    return 0;
}
