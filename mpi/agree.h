/* Failures are loud, never hangs (issue 3): every rank ends a phase by agreeing on its status.
 * If any rank failed, all ranks return the failure with the message of the lowest failing rank,
 * prefixed by "rank R: " (once: a message that has it already, agreed at an earlier boundary,
 * passes unchanged), and the driver exits non-zero everywhere. */
#ifndef CP_AGREE_H
#define CP_AGREE_H

#include <mpi.h>
#include <stddef.h>

#include "params.h"

/* Collective over comm. rc: this rank's status (0 or a negative cp_err), err: its message (in)
 * and the agreed message (out). Returns the agreed status (0 only if every rank succeeded). */
int cp_agree(MPI_Comm comm, int rc, char *err);

/* err past the "rank 0: " that cp_agree put before it on a communicator of one process, where
 * a rank means nothing to the user; err itself on more. */
const char *cp_agree_solo(MPI_Comm comm, const char *err);

/* Collective: 0 if every rank holds rank 0's parameters (all but --threads, which may differ per
 * node), else CP_EPARAM everywhere with "rank R: --name is V here but W on rank 0 ...": an MPMD
 * launch or a job file that differs between nodes would otherwise run mismatched ranks. */
int cp_agree_params(MPI_Comm comm, const cp_params *p, char *err);

/* Collective: 0 if buf[0..len) is the same on every rank (compared by a 64-bit hash), else
 * CP_EPARAM everywhere with "rank R: <what> differs from rank 0's". */
int cp_agree_same(MPI_Comm comm, const void *buf, size_t len, const char *what, char *err);

#endif
