/* Job-file loading with libconfig (see jobfile.h): syntax, keys, types; values go through
 * cp_param_set so the file and the command line share one set of range checks. */
#include "jobfile.h"

#include <libconfig.h>
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

/* Applies one top-level setting s of the file at path onto p. */
static int apply_setting(const char *path, const config_setting_t *s, cp_params *p, char *err)
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
        text = config_setting_get_string(s);
    } else if (is_int) {
        snprintf(value, sizeof value, "%lld", (long long)config_setting_get_int64(s));
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
    config_setting_t *root = config_root_setting(&cfg);
    for (int i = 0; !rc && i < config_setting_length(root); i++)
        rc = apply_setting(path, config_setting_get_elem(root, (unsigned)i), p, err);
    config_destroy(&cfg);
    return rc;
}
