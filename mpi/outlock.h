/* The lock of an output file (issue 20): `<output>.lock`, beside the output, created exclusively
 * (O_CREAT | O_EXCL, which holds on Lustre and NFS where HDF5's own file locking is turned off)
 * by rank 0 before the run writes anything, and removed when the run ends, whatever the outcome
 * (success, failure, exit 3 after SIGTERM / SIGUSR1). It holds three "key=value" lines:
 *     host=node01
 *     pid=12345                  (rank 0's process)
 *     started=2026-12-06T14:01:02Z
 * It guards everything the run writes under the output's name: `<output>.work`,
 * `<output>.partial.<pid>`, the output, and `_cp_masks.tif`. A lock left by a killed run (kill -9,
 * a crashed node) stays; `--resume` takes it over (the user's explicit intent), or the user
 * removes it: `rm <output>.lock`. */
#ifndef CP_OUTLOCK_H
#define CP_OUTLOCK_H

#include <mpi.h>

#include "cp_err.h"
#include "params.h"

typedef struct cp_outlock {
    char path[CP_PATH_LEN + 16]; /* <output>.lock */
    int held;                    /* rank 0: the file is ours to remove */
    char note[CP_ERR_LEN];       /* rank 0: "" or what a takeover replaced, for the driver */
} cp_outlock;

/* Collective over comm: rank 0 takes the lock of output `out` and every rank returns its status
 * (no "rank R:" prefix: the lock belongs to the job). A lock held by another run is refused with
 * CP_EIO: "out.h5: locked by host H pid P since T (another run is writing it; if that run is
 * dead, rerun with --resume or remove out.h5.lock)". With takeover (--resume) a lock whose holder
 * is gone is replaced: on another host (which cannot be checked from here), or on this host a pid
 * that no longer runs or that started after the lock (a reused pid); a live holder on this host
 * is refused even then. A takeover also removes the dead holder's `<out>.partial.<pid>`. */
int cp_outlock_take(MPI_Comm comm, const char *out, int takeover, cp_outlock *lk, char *err);

/* Removes the lock file if this process holds it (rank 0); safe to call on every rank, once or
 * more. */
void cp_outlock_release(cp_outlock *lk);

/* Removes the lock file of the last lock cp_outlock_take gave this job, from any rank: for a job
 * that is being aborted (cp_h5par_on_fatal), whose rank 0 cannot release it any more. */
void cp_outlock_remove_taken(void);

#endif
