/* Job files: one run described in a libconfig file (`key = value;` per parameter, the keys being
 * the names of the parameter table in params.h), applied onto a cp_params before the command-line
 * flags so that flags override it. */
#ifndef CP_JOBFILE_H
#define CP_JOBFILE_H

#include "params.h"

/* Reads the job file at path and sets every parameter it names in p (the other fields are left
 * as they are: call cp_params_default first). Types: int keys take integers, real keys integers
 * or floats, flag keys true/false, string keys strings; values are range-checked by cp_param_set,
 * with the same limits as the command line. Errors (CP_EIO unreadable, CP_EPARAM otherwise) name
 * the file, the line and the key: "jobs/x.cfg:12: unknown key 'nitr'". Cross-parameter checks are
 * left to cp_params_validate. Integers are taken as written (libconfig 1.5 keeps 32 bits of one
 * without L); one beyond 64 bits, a NUL byte in the file or an escaped NUL (\x00) in a string is
 * an error. */
int cp_jobfile_load(const char *path, cp_params *p, char *err);

#endif
