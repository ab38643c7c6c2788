/* Formatting of the engine's one-line error messages (see cp_err.h). */
#include "cp_err.h"

#include <stdarg.h>
#include <stdio.h>

int cp_errf(char *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, CP_ERR_LEN, fmt, ap);
        va_end(ap);
    }
    return code;
}

int cp_err_nomem(char *err, const char *who, const int64_t *dims, int ndim, const char *type,
                 int type_bytes, const char *why)
{
    char shape[160] = "";
    size_t used = 0;
    double bytes = type_bytes;
    for (int i = 0; i < ndim && used < sizeof shape; i++) {
        used += (size_t)snprintf(shape + used, sizeof shape - used, "%s%lld", i ? " x " : "",
                                 (long long)dims[i]);
        bytes *= (double)dims[i];
    }
    double gib = bytes / (1024.0 * 1024 * 1024);
    if (gib >= 1)
        return cp_errf(err, CP_ENOMEM, "%s: %s %s (%.1f GiB) %s do not fit in memory", who, shape,
                       type, gib, why);
    return cp_errf(err, CP_ENOMEM, "%s: %s %s (%.1f MiB) %s do not fit in memory", who, shape,
                   type, bytes / (1024.0 * 1024), why);
}
