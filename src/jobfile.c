/* Job-file loading with libconfig (see jobfile.h): syntax, keys, types; values go through
 * cp_param_set so the file and the command line share one set of range checks. */
#include "jobfile.h"

#include <errno.h>
#include <libconfig.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cp_err.h"

static const char *type_name(cp_param_type t)
{
    switch (t) {
    case CP_PT_INT: return "an integer";
    case CP_PT_REAL: return "a number";
    case CP_PT_FLAG: return "true or false";
    case CP_PT_STR: return "a string in double quotes";
    }
    return "?";
}

/* The job file's bytes, for the checks libconfig 1.5 cannot do: it keeps only the low 32 bits of
 * an integer written without L (4294967296 reads as 0, 99999999999999999999 as -1), drops an
 * escaped NUL from a string ("a\x00b" reads as "ab") and cuts a string at a NUL byte. */
typedef struct raw_file {
    char *text;
    size_t len;
} raw_file;

static int is_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '-' || c == '*';
}

/* Where the value of `key` starts on line `line` (after "key =" or "key :" and blanks), with the
 * end of that line in *end; NULL if the line does not hold it. after: NULL, or a value found
 * before on that line, to look for the next "key =" (the first may be inside a string). */
static const char *raw_value(const raw_file *f, int line, const char *key, const char **end,
                             const char *after)
{
    const char *t = f->text, *stop = f->text + f->len;
    for (int l = 1; l < line && t < stop; t++)
        if (*t == '\n') l++;
    const char *eol = memchr(t, '\n', (size_t)(stop - t));
    *end = eol ? eol : stop;
    size_t n = strlen(key);
    for (const char *k = after ? after : t; k + n <= *end; k++) {
        if (memcmp(k, key, n) || (k > t && is_name_char(k[-1])) || is_name_char(k[n])) continue;
        const char *v = k + n;
        while (v < *end && (*v == ' ' || *v == '\t')) v++;
        if (v == *end || (*v != '=' && *v != ':')) continue;
        for (v++; v < *end && (*v == ' ' || *v == '\t');) v++;
        return v;
    }
    return NULL;
}

/* The integer token at r (decimal or 0x hexadecimal, L suffix allowed) parsed into *w, saturated
 * as libconfig saturates it; *overflow if it does not fit in 64 bits. tok gets the text. 0 if r
 * holds no integer. */
static int parse_raw_int(const char *r, const char *end, char tok[64], long long *w,
                         int *overflow)
{
    size_t n = 0;
    while (r + n < end && n < 63 &&
           ((r[n] >= '0' && r[n] <= '9') || (r[n] >= 'a' && r[n] <= 'z') ||
            (r[n] >= 'A' && r[n] <= 'Z') || (n == 0 && (r[n] == '-' || r[n] == '+'))))
        n++;
    memcpy(tok, r, n);
    tok[n] = 0;
    while (n > 0 && (tok[n - 1] == 'L' || tok[n - 1] == 'l')) tok[--n] = 0;
    const char *digits = tok + (tok[0] == '-' || tok[0] == '+');
    int hex = digits[0] == '0' && (digits[1] == 'x' || digits[1] == 'X');
    char *stop;
    errno = 0;
    if (hex) {
        unsigned long long u = strtoull(digits, &stop, 16);
        *overflow = errno == ERANGE || u > (unsigned long long)LLONG_MAX;
        *w = (long long)u; /* libconfig: the same low 32 bits (strtoul saturates to all ones) */
    } else {
        *w = strtoll(tok, &stop, 10);
        *overflow = errno == ERANGE;
    }
    return *stop == 0 && stop != digits && stop != digits + 2 * hex;
}

/* The integer of setting s as written into *v (libconfig's value when the text is not found).
 * Error if it does not fit in 64 bits. Of the "key = ..." texts on the setting's line, the one
 * whose low 32 bits libconfig kept is this setting's (an earlier one may be inside a string). */
static int raw_int(const raw_file *f, const char *path, int line, const char *key,
                   const config_setting_t *s, long long *v, char *err)
{
    *v = config_setting_get_int64(s);
    const char *end;
    for (const char *r = raw_value(f, line, key, &end, NULL); r;
         r = raw_value(f, line, key, &end, r)) {
        char tok[64];
        long long w;
        int overflow;
        if (!parse_raw_int(r, end, tok, &w, &overflow) || (uint32_t)w != (uint32_t)*v) continue;
        if (overflow)
            return cp_errf(err, CP_EPARAM, "%s:%d: key '%s': %s does not fit in a 64-bit integer",
                           path, line, key, tok);
        *v = w;
        return 0;
    }
    return 0;
}

/* Error if the string value of key on line holds an escaped NUL (\x00), which libconfig drops. */
static int raw_string_nul(const raw_file *f, const char *path, int line, const char *key, char *err)
{
    const char *end, *r = raw_value(f, line, key, &end, NULL);
    for (const char *c = r; c && c + 4 <= end; c++) {
        if (memcmp(c, "\\x00", 4)) continue;
        int slashes = 0;
        for (const char *b = c; b >= r && *b == '\\'; b--) slashes++;
        if (slashes % 2)
            return cp_errf(err, CP_EPARAM, "%s:%d: key '%s': the string contains a NUL (\\x00), "
                           "which would cut or change the name", path, line, key);
    }
    return 0;
}

/* Applies one top-level setting s of the file at path onto p. */
static int apply_setting(const char *path, const raw_file *f, const config_setting_t *s,
                         cp_params *p, char *err)
{
    const char *key = config_setting_name(s);
    int line = config_setting_source_line(s), t = config_setting_type(s);
    const cp_param_def *d = cp_param_find(key);
    if (!d) return cp_errf(err, CP_EPARAM, "%s:%d: unknown key '%s'", path, line, key);
    if (!strcmp(key, "job"))
        return cp_errf(err, CP_EPARAM, "%s:%d: key 'job': a job file cannot name another one",
                       path, line);
    int is_int = t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64;
    int ok = d->type == CP_PT_INT    ? is_int
             : d->type == CP_PT_REAL ? is_int || t == CONFIG_TYPE_FLOAT
             : d->type == CP_PT_FLAG ? t == CONFIG_TYPE_BOOL
                                     : t == CONFIG_TYPE_STRING;
    if (!ok)
        return cp_errf(err, CP_EPARAM, "%s:%d: key '%s': the value must be %s", path, line, key,
                       type_name(d->type));
    char value[64], msg[CP_ERR_LEN];
    const char *text = value;
    if (d->type == CP_PT_FLAG) {
        if (!config_setting_get_bool(s)) { /* false: the flag is off */
            *(int *)((char *)p + d->offset) = 0;
            return 0;
        }
        text = NULL;
    } else if (d->type == CP_PT_STR) {
        int rc = raw_string_nul(f, path, line, key, err);
        if (rc) return rc;
        text = config_setting_get_string(s);
    } else if (is_int) {
        long long v;
        int rc = raw_int(f, path, line, key, s, &v, err);
        if (rc) return rc;
        snprintf(value, sizeof value, "%lld", v);
    } else { /* the shortest text that reads back as the same double */
        double x = config_setting_get_float(s);
        for (int digits = 15; digits <= 17; digits++) {
            snprintf(value, sizeof value, "%.*g", digits, x);
            if (strtod(value, NULL) == x) break;
        }
    }
    int rc = cp_param_set(p, d, text, msg);
    if (rc) {
        /* cp_param_set names the flag ("--niter: ..."); say the key instead. */
        const char *why = msg;
        size_t n = strlen(d->name);
        if (!strncmp(why, "--", 2) && !strncmp(why + 2, d->name, n) && why[n + 2] == ':')
            why += n + 4;
        return cp_errf(err, rc, "%s:%d: key '%s': %s", path, line, key, why);
    }
    return 0;
}

int cp_jobfile_load(const char *path, cp_params *p, char *err)
{
    config_t cfg;
    config_init(&cfg);
    int rc = 0;
    if (!config_read_file(&cfg, path)) {
        if (config_error_type(&cfg) == CONFIG_ERR_FILE_IO)
            rc = cp_errf(err, CP_EIO, "%s: cannot read the job file", path);
        else
            rc = cp_errf(err, CP_EPARAM, "%s:%d: syntax error: %s", path,
                         config_error_line(&cfg), config_error_text(&cfg));
        config_destroy(&cfg);
        return rc;
    }
    raw_file f = {NULL, 0};
    FILE *in = fopen(path, "rb");
    for (size_t cap = 0; in && !rc;) { /* the bytes as written, for raw_int and the NUL checks */
        if (f.len == cap) {
            char *grown = realloc(f.text, cap = cap ? 2 * cap : 4096);
            if (!grown) rc = cp_errf(err, CP_ENOMEM, "%s: out of memory", path);
            else f.text = grown;
            continue;
        }
        size_t got = fread(f.text + f.len, 1, cap - f.len, in);
        if (!got) break;
        f.len += got;
    }
    if (in) fclose(in);
    const char *nul = f.text ? memchr(f.text, 0, f.len) : NULL;
    if (!rc && nul) {
        int line = 1;
        for (const char *c = f.text; c < nul; c++) line += *c == '\n';
        rc = cp_errf(err, CP_EPARAM, "%s:%d: a NUL byte in the file (a name would be cut at it)",
                     path, line);
    }
    config_setting_t *root = config_root_setting(&cfg);
    for (int i = 0; !rc && i < config_setting_length(root); i++)
        rc = apply_setting(path, &f, config_setting_get_elem(root, (unsigned)i), p, err);
    free(f.text);
    config_destroy(&cfg);
    return rc;
}
