/* Error convention of the whole engine: functions return 0 or a negative cp_err, and write a
 * one-line message (what, where, why) into a caller's buffer of CP_ERR_LEN bytes. Only the
 * drivers print and exit. */
#ifndef CP_ERR_H
#define CP_ERR_H

#include <stdint.h>

#define CP_ERR_LEN 512

enum cp_err {
    CP_OK = 0,
    CP_EIO = -1,          /* cannot open / read / write a file */
    CP_EFORMAT = -2,      /* a file is corrupt, truncated or not what it claims */
    CP_EUNSUPPORTED = -3, /* a valid file in a variant we do not read */
    CP_EPARAM = -4,       /* a parameter out of range or inconsistent */
    CP_ENOMEM = -5,       /* an allocation failed */
    CP_EDATA = -6,        /* image content we refuse (NaN/Inf, too many labels) */
    CP_EMPI = -7,         /* a communication failure or a failure on another rank */
    CP_EINTR = -8,        /* stopped by a signal after a clean checkpoint */
};

/* Formats the message into err (truncated to CP_ERR_LEN) and returns code, so that a failing
 * path reads: return cp_errf(err, CP_EFORMAT, "%s: page %d: ...", path, page); */
int cp_errf(char *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* CP_ENOMEM for an array that could not be allocated, saying what it was and why, so that a huge
 * (or corrupt) header reads as such: cp_err_nomem(err, "img.tif", (int64_t[]){65535, 65535, 1},
 * 3, "uint32", 4, "for the labels") writes "img.tif: 65535 x 65535 x 1 uint32 (16.0 GiB) for the
 * labels do not fit in memory". */
int cp_err_nomem(char *err, const char *who, const int64_t *dims, int ndim, const char *type,
                 int type_bytes, const char *why);

#endif
