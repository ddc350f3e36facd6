/* settings.c - the environment, read once (settings.h). */
#include "settings.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static ss_settings settings;
static pthread_once_t once = PTHREAD_ONCE_INIT;

/* the variable's value, or NULL when unset or empty */
static const char *value(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

static void read_env(void)
{
    settings.model = value("STEMSPLIT_MODEL");
    settings.device = value("STEMSPLIT_DEVICE");
    settings.model_path = value("STEMSPLIT_MODEL_PATH");
    settings.cuda_module = value("STEMSPLIT_CUDA_MODULE");
    settings.spool_max = value("STEMSPLIT_SPOOL_MAX");
    const char *p = value("STEMSPLIT_PROFILE");
    settings.profile = !p                         ? SS_PROFILE_OFF
                       : strcmp(p, "calls") == 0  ? SS_PROFILE_CALLS
                       : strcmp(p, "engine") == 0 ? SS_PROFILE_ENGINE
                       : p[0] == '1'              ? SS_PROFILE_OPS
                                                  : SS_PROFILE_OFF;
}

const ss_settings *ss_settings_get(void)
{
    pthread_once(&once, read_env);
    return &settings;
}
