/* Wall-clock time per phase, for the summary the drivers print. */
#ifndef CP_TIMING_H
#define CP_TIMING_H

#include <stdio.h>

typedef enum cp_phase {
    CP_PH_READ, CP_PH_PREP, CP_PH_NET, CP_PH_FOLLOW, CP_PH_MASKS, CP_PH_POST, CP_PH_WRITE,
    CP_PH_COUNT
} cp_phase;

typedef struct cp_timing {
    double sec[CP_PH_COUNT];
    double comm[CP_PH_COUNT];   /* of which spent in MPI calls (distributed runs) */
} cp_timing;

/* Seconds since an arbitrary start (monotonic). */
double cp_now(void);
/* Adds the time since *t0 to phase ph and resets *t0 to now. */
void cp_timing_lap(cp_timing *t, cp_phase ph, double *t0);
/* One line per phase with seconds and share of the total (and MPI seconds if any). */
void cp_timing_print(const cp_timing *t, FILE *f);

#endif
