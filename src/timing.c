/* Per-phase wall-clock accounting (see timing.h). */
#include "timing.h"

#include <time.h>

static const char *const names[CP_PH_COUNT] = {
    "read", "normalize", "network", "follow flows", "seeds+masks", "qc+holes+min_size", "write",
};

double cp_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void cp_timing_lap(cp_timing *t, cp_phase ph, double *t0)
{
    double now = cp_now();
    t->sec[ph] += now - *t0;
    *t0 = now;
}

void cp_timing_print(const cp_timing *t, FILE *f)
{
    double total = 0, comm = 0;
    for (int i = 0; i < CP_PH_COUNT; i++) total += t->sec[i], comm += t->comm[i];
    fprintf(f, "timing summary (wall seconds%s):\n", comm > 0 ? "; MPI: time in communication" : "");
    for (int i = 0; i < CP_PH_COUNT; i++) {
        fprintf(f, "  %-18s %9.3f s  %5.1f%%", names[i], t->sec[i],
                total > 0 ? 100.0 * t->sec[i] / total : 0.0);
        if (comm > 0) fprintf(f, "   MPI %8.3f s", t->comm[i]);
        fputc('\n', f);
    }
    fprintf(f, "  %-18s %9.3f s", "total", total);
    if (comm > 0) fprintf(f, "          MPI %8.3f s", comm);
    fputc('\n', f);
}
