/* Failures are loud, never hangs (issue 3): every rank ends a phase by agreeing on its status.
 * If any rank failed, all ranks return the failure with the message of the lowest failing rank,
 * prefixed by "rank R: " (once: a message that has it already, agreed at an earlier boundary,
 * passes unchanged), and the driver exits non-zero everywhere. */
#ifndef CP_AGREE_H
#define CP_AGREE_H

#include <mpi.h>

/* Collective over comm. rc: this rank's status (0 or a negative cp_err), err: its message (in)
 * and the agreed message (out). Returns the agreed status (0 only if every rank succeeded). */
int cp_agree(MPI_Comm comm, int rc, char *err);

#endif
