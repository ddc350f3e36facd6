/* settings.h - the environment variables stemsplit itself reads, read once
 * into one struct (the first call of ss_settings_get(); later changes to the
 * environment are not seen).  Every one is listed, with its effect, in
 * man/stemsplit.1, section ENVIRONMENT.  (The CUDA module and the emulators
 * read their own knobs; they are listed there too.) */
#ifndef SS_SETTINGS_H
#define SS_SETTINGS_H

/* STEMSPLIT_PROFILE: what is timed and printed on stderr. */
typedef enum ss_profile_mode {
    SS_PROFILE_OFF = 0,     /* unset or anything else                                    */
    SS_PROFILE_ENGINE,      /* "engine": the engine's split and each file's stages        */
    SS_PROFILE_OPS,         /* "1": that, and every backend op synchronised and timed     */
    SS_PROFILE_CALLS        /* "calls": that, and each op call of 1 ms or more as it ends */
} ss_profile_mode;

typedef struct ss_settings {
    const char *model;        /* STEMSPLIT_MODEL: -m's default; NULL when unset or empty        */
    const char *device;       /* STEMSPLIT_DEVICE: -d's default; NULL when unset or empty       */
    const char *model_path;   /* STEMSPLIT_MODEL_PATH: colon list searched for -m NAME; NULL    */
    const char *cuda_module;  /* STEMSPLIT_CUDA_MODULE: the CUDA module to load; NULL: the usual
                               * places (src/backend.c)                                         */
    const char *spool_max;    /* STEMSPLIT_SPOOL_MAX: the most bytes spooled from a pipe or device,
                               * as given (parsed by ss_spool_limit, src/audio.c); NULL: 4G      */
    ss_profile_mode profile;  /* STEMSPLIT_PROFILE                                              */
} ss_settings;

/* The settings, read from the environment on the first call (thread-safe). */
const ss_settings *ss_settings_get(void);

/* STEMSPLIT_PROFILE asks for the engine's and the files' stage times. */
static inline int ss_profile_stages(void) { return ss_settings_get()->profile != SS_PROFILE_OFF; }

#endif
