/* Stop requests: SIGTERM or SIGUSR1 (a batch system's time limit) raise a flag in the driver's
 * signal handler; the engine's long loops (tile batches of the network, planes, images of a
 * folder) poll it at their boundaries and end with CP_EINTR, leaving nothing half-written.
 * The one piece of process-wide state in the engine: a signal handler has no context to reach. */
#ifndef CP_STOP_H
#define CP_STOP_H

/* Asks the running work to stop at its next boundary (async-signal-safe). */
void cp_stop_request(void);
/* 1 once a stop was requested. */
int cp_stop_requested(void);

#endif
