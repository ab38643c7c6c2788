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
