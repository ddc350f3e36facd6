/* cli.c - the stemsplit command: options, inputs, device and model set-up,
 * the batch over the input files (src/batch.c), reports, and the mapping of
 * errors to sysexits codes. */
#include <cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audio.h"
#include "clock.h"
#include "backend.h"
#include "backend_cpu.h"
#include "batch.h"
#include "engine.h"
#include "eval_cmd.h"
#include "model.h"
#include "report.h"
#include "separate.h"
#include "settings.h"
#include "stream.h"
#include "template.h"

/* ---- options, with every default in one place ------------------------------------- */

typedef struct options {
    const char *model;          /* -m: path or NAME (env STEMSPLIT_MODEL; else htdemucs when installed) */
    const char *out_dir;        /* -o                                                */
    const char *filename;       /* --filename template                               */
    const char *device;         /* -d (env STEMSPLIT_DEVICE)                         */
    const char *precision;      /* --precision                                       */
    const char *stems;          /* --stems a,b                                       */
    const char *two_stems;      /* --two-stems X                                     */
    double segment;             /* --segment seconds (0 = model's)                   */
    double overlap;             /* --overlap                                         */
    int overlap_set;            /* --overlap was given (MSST models: else theirs)    */
    int shifts;                 /* --shifts                                          */
    unsigned long long seed;    /* --seed                                            */
    int batch;                  /* --batch                                           */
    double wiener;              /* --wiener ALPHA (0 = off)                          */
    int threads;                /* -j (0 = all cores)                                */
    const char *format;         /* --format                                          */
    const char *sample_format;  /* --sample-format                                   */
    int bitrate;                /* --bitrate kbit/s (0 = the format's default)       */
    const char *clip;           /* --clip                                            */
    const char *report_json;    /* --report-json FILE                                */
    int quiet, verbose;         /* -q, -v                                            */
    int list_devices;           /* --list-devices                                    */
    int list_models;            /* --list-models                                     */
    int json;                   /* --json (with --list-models)                       */
    int recursive;              /* -r                                                */
    const char *files_from;     /* --files-from LIST                                 */
    int skip_existing;          /* --skip-existing                                   */
    int no_clobber;             /* --no-clobber                                      */
    int shard_index, shard_count; /* --shard I/N (0/0 = all)                         */
    const char *then[SS_MAX_SOURCES]; /* --then STEM=MODEL, in order given          */
    int n_then;
    int stream;                 /* --stream: raw PCM stdin -> stdout                 */
    const char *stream_format;  /* --stream-format s16|f32                           */
    int stream_rate;            /* --stream-rate HZ                                  */
    int stream_channels;        /* --stream-channels N                               */
    const char *stream_opt;     /* the last --stream-* option given (needs --stream) */
    const char *file_opt;       /* the last option given that is for files only      */
} options;

static const options defaults = {
    .model = NULL, .out_dir = "separated", .filename = "{model}/{dir}/{track}/{stem}.{ext}", .device = "auto",
    .precision = "auto", .stems = NULL, .two_stems = NULL, .segment = 0, .overlap = 0.25, .shifts = 0,
    .seed = 0, .batch = 1, .wiener = 0, .threads = 0, .format = "wav", .sample_format = "s16", .bitrate = 0, .clip = "rescale",
    .report_json = NULL, .quiet = 0, .verbose = 0, .list_devices = 0, .list_models = 0, .json = 0, .recursive = 0,
    .files_from = NULL,
    .skip_existing = 0, .no_clobber = 0, .shard_index = 0, .shard_count = 0,
    .stream = 0, .stream_format = "s16", .stream_rate = 48000, .stream_channels = 1,
};

static const char *prog = "stemsplit";

static void usage(FILE *f)
{
    const options *d = &defaults;
    fprintf(f,
        "Usage: %s [OPTIONS] FILE|DIR...\n"
        "       stemsplit eval [--report-json FILE] [--plot FILE.svg] REF_DIR EST_DIR   (score stems; eval --help)\n"
        "Split music recordings into stems (drums, bass, vocals, other, ...) with a neural network.\n"
        "FILE: WAV, FLAC, AIFF, Ogg, MP3, ... (libsndfile, libmpg123); M4A/AAC, WMA, WebM, ... through\n"
        "ffmpeg when it is on PATH.  FILE may be - for standard input; DIR gives the audio files in it.\n"
        "Stems go to OUT/{model}/{track}/{stem}.{ext} by default ({dir}/ before {track} for files found\n"
        "in a DIR), as demucs's separated/MODEL/TRACK/STEM.wav.\n"
        "\n"
        "Model and device:\n"
        "  -m, --model PATH|NAME    model file, or NAME.safetensors looked up in $STEMSPLIT_MODEL_PATH,\n"
        "                           ~/.local/share/stemsplit/models and %s/models (env STEMSPLIT_MODEL;\n"
        "                           default htdemucs when installed: scripts/download-model.sh htdemucs)\n"
        "  -d, --device DEV         auto, cpu, cuda, cuda:N or mps (env STEMSPLIT_DEVICE; default %s)\n"
        "      --precision P        GPU matrix products: auto, fp32, tf32, bf16, fp16 or mixed (default %s:\n"
        "                           mixed on CUDA, fp32 elsewhere; the CPU always computes in fp32)\n"
        "      --list-devices       list the backends compiled in and their devices, then exit\n"
        "      --list-models        list the models on the model path (name, architecture, stems, rate,\n"
        "                           size; a file that cannot be read with its error), then exit;\n"
        "                           --json: as JSON on standard output\n"
        "  -j, --threads N          CPU threads (default: all cores)\n"
        "      --then STEM=MODEL    also separate the first model's stem STEM with MODEL (a path or NAME\n"
        "                           as -m takes), in the same run on the same device (no stem file in\n"
        "                           between: it is staged in an unlinked temporary file);\n"
        "                           its stems are written as STEM/NAME ({stem} = drums/kick); repeat it\n"
        "                           for other stems.  --segment, --overlap, --shifts apply to the\n"
        "                           first model only; STEM itself is written unless --stems leaves it out\n"
        "\n"
        "Output:\n"
        "  -o, --out OUT            output directory (default %s)\n"
        "      --filename TEMPLATE  output path under OUT (default %s);\n"
        "                           fields {track} {inext} {stem} {ext} {model} {dir}\n"
        "      --stems A,B          write only these stems\n"
        "      --two-stems STEM     write STEM and no_STEM (the sum of the other stems)\n"
        "      --format F           wav, flac, mp3, opus or ogg (Vorbis) (default %s); opus is written at\n"
        "                           48 kHz unless the input is at 8, 12, 16, 24 or 48 kHz\n"
        "      --bitrate KBPS       lossy formats: mp3 constant bitrate 32..320 (default %d), opus VBR target\n"
        "                           6..256 per channel (default %d), ogg Vorbis VBR quality whose nominal\n"
        "                           rate this is, 64..500 (default %d, quality 6)\n"
        "      --sample-format S    wav and flac: s16, s24 or f32 (default %s; flac takes s16 or s24)\n"
        "      --clip MODE          rescale, clamp or none (default %s): rescale scales all stems of a\n"
        "                           file down together if any would clip\n"
        "\n"
        "Inputs and batches:\n"
        "  -r, --recursive          take the audio files in the sub-folders of each DIR too\n"
        "      --files-from LIST    also take the paths in LIST, one per line (- for standard input)\n"
        "      --skip-existing      skip a track whose stems all exist already (to resume a batch)\n"
        "      --no-clobber         an existing stem is an error for its track (default: replace it)\n"
        "      --shard I/N          separate only part I of N balanced parts of the inputs\n"
        "\n"
        "Separation:\n"
        "      --segment SEC        chunk length in seconds (default: the model's)\n"
        "      --overlap F          overlap between chunks, 0 <= F <= 0.99 (default %.2f; MSST models:\n"
        "                           num_overlap = round(1 / (1 - F)), default the model's)\n"
        "      --shifts N           average N passes with random time shifts (default %d; not with\n"
        "                           MSST models)\n"
        "      --seed N             seed for --shifts (default %llu)\n"
        "      --batch N            chunks per forward call (default %d)\n"
        "      --wiener ALPHA       LarsNet: alpha-Wiener filter across the five stems'\n"
        "                           magnitudes with exponent ALPHA (default: off)\n"
        "\n"
        "Reporting:\n"
        "      --report-json FILE   write a JSON report of the run (- for standard output)\n"
        "  -q, --quiet              print only errors\n"
        "  -v, --verbose            print the device, model and chunking chosen, how a\n"
        "                           file's channels are mapped, and statistics a model\n"
        "                           reports per track (DeepFilterNet3: local SNR)\n"
        "\n"
        "Live stream (models that run frame by frame: DeepFilterNet3):\n"
        "      --stream             read raw interleaved little-endian PCM on standard input until its\n"
        "                           end and write the model's first stem (speech) in the same format,\n"
        "                           rate and channels to standard output as soon as its samples are\n"
        "                           final, as many frames as came in; no files, -o or stem options;\n"
        "                           -v prints the algorithmic latency (DeepFilterNet3: 40 ms)\n"
        "      --stream-format S    s16 or f32 (default %s)\n"
        "      --stream-rate HZ     sample rate (default %d; others resampled to the model's and back)\n"
        "      --stream-channels N  channels, each its own stream (default %d)\n"
        "      --version            print the version and exit\n"
        "  -h, --help               print this help and exit\n"
        "\n"
        "Exit status: 0 ok, 64 usage, 65 bad model or audio data, 66 input missing,\n"
        "69 device unavailable, 70 internal error, 73 cannot create output, 74 I/O error,\n"
        "130/143 interrupted.  See stemsplit(1).\n",
        prog, SS_DATADIR, d->device, d->precision, d->out_dir, d->filename, d->format,
        ss_file_format_bitrate(SS_FILE_MP3), ss_file_format_bitrate(SS_FILE_OPUS), ss_file_format_bitrate(SS_FILE_OGG),
        d->sample_format,
        d->clip, d->overlap, d->shifts, d->seed, d->batch, d->stream_format, d->stream_rate, d->stream_channels);
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", prog);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry '%s --help' for more information.\n", prog);
    return 64;
}

static int parse_int(const char *s, long lo, long hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -1;
    *out = (int)v;
    return 0;
}

static int parse_double(const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

enum {
    OPT_FILENAME = 256, OPT_PRECISION, OPT_LIST_DEVICES, OPT_STEMS, OPT_TWO_STEMS, OPT_SEGMENT, OPT_OVERLAP,
    OPT_SHIFTS, OPT_SEED, OPT_BATCH, OPT_FORMAT, OPT_SAMPLE_FORMAT, OPT_CLIP, OPT_REPORT_JSON, OPT_VERSION,
    OPT_FILES_FROM, OPT_SKIP_EXISTING, OPT_NO_CLOBBER, OPT_SHARD, OPT_BITRATE, OPT_LIST_MODELS, OPT_JSON,
    OPT_THEN,
    OPT_WIENER,
    OPT_STREAM, OPT_STREAM_FORMAT, OPT_STREAM_RATE, OPT_STREAM_CHANNELS,
};

static const struct option long_opts[] = {
    {"model", required_argument, NULL, 'm'},
    {"out", required_argument, NULL, 'o'},
    {"filename", required_argument, NULL, OPT_FILENAME},
    {"device", required_argument, NULL, 'd'},
    {"precision", required_argument, NULL, OPT_PRECISION},
    {"list-devices", no_argument, NULL, OPT_LIST_DEVICES},
    {"list-models", no_argument, NULL, OPT_LIST_MODELS},
    {"json", no_argument, NULL, OPT_JSON},
    {"stems", required_argument, NULL, OPT_STEMS},
    {"two-stems", required_argument, NULL, OPT_TWO_STEMS},
    {"segment", required_argument, NULL, OPT_SEGMENT},
    {"overlap", required_argument, NULL, OPT_OVERLAP},
    {"shifts", required_argument, NULL, OPT_SHIFTS},
    {"seed", required_argument, NULL, OPT_SEED},
    {"batch", required_argument, NULL, OPT_BATCH},
    {"wiener", required_argument, NULL, OPT_WIENER},
    {"threads", required_argument, NULL, 'j'},
    {"format", required_argument, NULL, OPT_FORMAT},
    {"sample-format", required_argument, NULL, OPT_SAMPLE_FORMAT},
    {"bitrate", required_argument, NULL, OPT_BITRATE},
    {"clip", required_argument, NULL, OPT_CLIP},
    {"report-json", required_argument, NULL, OPT_REPORT_JSON},
    {"recursive", no_argument, NULL, 'r'},
    {"files-from", required_argument, NULL, OPT_FILES_FROM},
    {"skip-existing", no_argument, NULL, OPT_SKIP_EXISTING},
    {"no-clobber", no_argument, NULL, OPT_NO_CLOBBER},
    {"shard", required_argument, NULL, OPT_SHARD},
    {"then", required_argument, NULL, OPT_THEN},
    {"stream", no_argument, NULL, OPT_STREAM},
    {"stream-format", required_argument, NULL, OPT_STREAM_FORMAT},
    {"stream-rate", required_argument, NULL, OPT_STREAM_RATE},
    {"stream-channels", required_argument, NULL, OPT_STREAM_CHANNELS},
    {"quiet", no_argument, NULL, 'q'},
    {"verbose", no_argument, NULL, 'v'},
    {"version", no_argument, NULL, OPT_VERSION},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* Parse argv into o; returns -1 to go on, else an exit code. */
static int parse_args(int argc, char **argv, options *o)
{
    int c;
    opterr = 0;
    int idx;
    while ((c = getopt_long(argc, argv, ":m:o:d:j:rqvh", long_opts, &idx)) != -1) {
        /* options for files only (--stream refuses them): their names */
        static const char *const file_only[] = {"out", "filename", "stems", "two-stems", "segment", "overlap",
                                                "shifts", "seed", "batch", "wiener", "format", "sample-format",
                                                "bitrate", "clip", "report-json", "recursive", "files-from",
                                                "skip-existing", "no-clobber", "shard", "then", NULL};
        const char *name = NULL;
        for (int k = 0; long_opts[k].name && !name; k++)
            if (long_opts[k].val == c && c != '?' && c != ':')
                name = long_opts[k].name;
        for (int k = 0; name && file_only[k]; k++)
            if (strcmp(name, file_only[k]) == 0)
                o->file_opt = name;
        switch (c) {
        case 'm': o->model = optarg; break;
        case 'o': o->out_dir = optarg; break;
        case OPT_FILENAME: o->filename = optarg; break;
        case 'd': o->device = optarg; break;
        case OPT_PRECISION: o->precision = optarg; break;
        case OPT_LIST_DEVICES: o->list_devices = 1; break;
        case OPT_LIST_MODELS: o->list_models = 1; break;
        case OPT_JSON: o->json = 1; break;
        case OPT_STEMS: o->stems = optarg; break;
        case OPT_TWO_STEMS: o->two_stems = optarg; break;
        case OPT_SEGMENT:
            if (parse_double(optarg, 0.01, 3600, &o->segment))
                return usage_error("--segment '%s': expected seconds between 0.01 and 3600", optarg);
            break;
        case OPT_OVERLAP:
            if (parse_double(optarg, 0, 0.99, &o->overlap))
                return usage_error("--overlap '%s': expected a fraction in [0, 0.99]", optarg);
            o->overlap_set = 1;
            break;
        case OPT_WIENER:
            if (parse_double(optarg, 0.01, 100, &o->wiener))
                return usage_error("--wiener '%s': expected an exponent between 0.01 and 100", optarg);
            break;
        case OPT_SHIFTS:
            if (parse_int(optarg, 0, 100, &o->shifts))
                return usage_error("--shifts '%s': expected an integer in 0..100", optarg);
            break;
        case OPT_SEED: {
            char *end;
            errno = 0;
            o->seed = strtoull(optarg, &end, 10);
            if (errno || end == optarg || *end || optarg[0] == '-')
                return usage_error("--seed '%s': expected a non-negative integer", optarg);
            break;
        }
        case OPT_BATCH:
            if (parse_int(optarg, 1, 1024, &o->batch))
                return usage_error("--batch '%s': expected an integer in 1..1024", optarg);
            break;
        case 'j':
            if (parse_int(optarg, 1, 1024, &o->threads))
                return usage_error("--threads '%s': expected an integer in 1..1024", optarg);
            break;
        case OPT_FORMAT: o->format = optarg; break;
        case OPT_SAMPLE_FORMAT: o->sample_format = optarg; break;
        case OPT_BITRATE:
            if (parse_int(optarg, 1, 100000, &o->bitrate))
                return usage_error("--bitrate '%s': expected kbit/s, e.g. 320", optarg);
            break;
        case OPT_CLIP: o->clip = optarg; break;
        case OPT_REPORT_JSON: o->report_json = optarg; break;
        case 'r': o->recursive = 1; break;
        case OPT_FILES_FROM: o->files_from = optarg; break;
        case OPT_SKIP_EXISTING: o->skip_existing = 1; break;
        case OPT_NO_CLOBBER: o->no_clobber = 1; break;
        case OPT_SHARD: {
            char *end;
            errno = 0;
            long i = strtol(optarg, &end, 10), n = 0;
            if (!errno && end != optarg && *end == '/') {
                char *num = end + 1;
                n = strtol(num, &end, 10);
                if (errno || end == num || *end)
                    n = 0;
            }
            if (n < 1 || n > 1000000 || i < 1 || i > n)
                return usage_error("--shard '%s': expected I/N with 1 <= I <= N <= 1000000 (e.g. 2/8)", optarg);
            o->shard_index = (int)i;
            o->shard_count = (int)n;
            break;
        }
        case OPT_THEN: {
            const char *eq = strchr(optarg, '=');
            if (!eq || eq == optarg || !eq[1])
                return usage_error("--then '%s': expected STEM=MODEL (e.g. --then drums=larsnet)", optarg);
            if (o->n_then == SS_MAX_SOURCES)
                return usage_error("--then %s: at most %d chained models", optarg, SS_MAX_SOURCES);
            o->then[o->n_then++] = optarg;
            break;
        }
        case OPT_STREAM: o->stream = 1; break;
        case OPT_STREAM_FORMAT:
            if (ss_pcm_format_parse(optarg) < 0)
                return usage_error("--stream-format '%s': expected s16 or f32", optarg);
            o->stream_format = optarg;
            o->stream_opt = "--stream-format";
            break;
        case OPT_STREAM_RATE:
            if (parse_int(optarg, 1000, 768000, &o->stream_rate))
                return usage_error("--stream-rate '%s': expected a sample rate in Hz, 1000..768000", optarg);
            o->stream_opt = "--stream-rate";
            break;
        case OPT_STREAM_CHANNELS:
            if (parse_int(optarg, 1, 64, &o->stream_channels))
                return usage_error("--stream-channels '%s': expected 1..64", optarg);
            o->stream_opt = "--stream-channels";
            break;
        case 'q': o->quiet = 1; break;
        case 'v': o->verbose++; break;
        case OPT_VERSION:
            printf("stemsplit %s (%s)\n", SS_VERSION, SS_GIT_COMMIT);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        case ':':
            return usage_error("option '%s' needs an argument", argv[optind - 1]);
        default:
            return usage_error("unknown option '%s'", argv[optind - 1]);
        }
    }
    return -1;
}

/* ---- devices ----------------------------------------------------------------------- */

static void list_devices(void)
{
    const ss_backend_iface *const *list = ss_backend_list();
    for (int i = 0; list[i]; i++) {
        int n = list[i]->device_count();
        const char *why = n == 0 ? ss_backend_unavailable(list[i]) : NULL;
        printf("%s: %d device%s%s%s%s\n", list[i]->name, n, n == 1 ? "" : "s", why ? " (" : "", why ? why : "",
               why ? ")" : "");
        for (int k = 0; k < n; k++) {
            ss_device_info info;
            if (list[i]->device_info(k, &info) != SS_OK)
                continue;
            printf("  %s:%d  %s  memory %.1f GiB total, %.1f GiB free  %s  %s\n", info.backend, k, info.name,
                   info.mem_total / 1073741824.0, info.mem_free / 1073741824.0,
                   info.usable ? "usable" : "NOT usable", info.note);
        }
    }
    if (!ss_backend_find("cuda"))
        printf("cuda: not compiled in (built without CUDA support)\n");
#if !defined(SS_WITH_METAL)
    printf("mps: not compiled in (%s)\n",
#ifdef __APPLE__
           "built without Metal support"
#else
           "Metal is only available on Apple machines"
#endif
    );
#endif
}

/* ---- signals and progress ------------------------------------------------------------ */

static volatile sig_atomic_t cancel_signal;

static void on_signal(int sig) { cancel_signal = sig; }

/* ---- stems selection ------------------------------------------------------------------- */

static int source_index(const ss_model_info *info, const char *name, size_t len)
{
    for (int i = 0; i < info->n_sources; i++)
        if (strlen(info->sources[i]) == len && strncmp(info->sources[i], name, len) == 0)
            return i;
    return -1;
}

static void list_sources(const ss_model_info *info, char *buf, size_t size)
{
    buf[0] = '\0';
    for (int i = 0; i < info->n_sources; i++)
        snprintf(buf + strlen(buf), size - strlen(buf), "%s%s", i ? ", " : "", info->sources[i]);
}

static int choose_stems(const options *o, const ss_model_info *info, ss_sep_params *sp)
{
    char known[SS_MAX_SOURCES * SS_MAX_NAME];
    list_sources(info, known, sizeof known);
    sp->stems = 0;
    sp->two_stems = -1;
    if (o->stems && o->two_stems)
        return usage_error("%s: --stems and --two-stems cannot be used together", "options");
    if (o->two_stems) {
        sp->two_stems = source_index(info, o->two_stems, strlen(o->two_stems));
        if (sp->two_stems < 0) {
            fprintf(stderr, "%s: --two-stems %s: model %s has no such stem (it has: %s)\n", prog, o->two_stems,
                    info->name, known);
            return 64;
        }
    }
    if (o->stems) {
        for (const char *p = o->stems;;) {
            size_t len = strcspn(p, ",");
            int i = source_index(info, p, len);
            if (i < 0) {
                fprintf(stderr, "%s: --stems: model %s has no stem '%.*s' (it has: %s)\n", prog, info->name,
                        (int)len, p, known);
                return 64;
            }
            sp->stems |= 1u << i;
            if (!p[len])
                break;
            p += len + 1;
        }
    }
    return -1;
}

/* ---- chained models (--then) ------------------------------------------------------- */

typedef struct chain_setup {
    ss_chain v[SS_MAX_SOURCES];             /* what the pipeline takes (models once loaded) */
    char path[SS_MAX_SOURCES][PATH_MAX];    /* each MODEL's file                            */
    ss_model_info info[SS_MAX_SOURCES];     /* its header                                   */
    ss_mem_estimate mem[SS_MAX_SOURCES];
    int n;
} chain_setup;

/* --then STEM=MODEL, checked from the headers before any work: STEM one of
 * the first model's stems (its residual included), each at most once (64);
 * MODEL's file found (66) and its header read (65); its rate reachable from
 * the first model's by resampling and its channels from the first model's
 * (64).  Returns -1 to go on, else an exit code. */
static int check_chain(const options *o, const ss_model_info *first, chain_setup *c)
{
    char known[SS_MAX_SOURCES * SS_MAX_NAME];
    list_sources(first, known, sizeof known);
    for (int k = 0; k < o->n_then; k++) {
        const char *arg = o->then[k], *eq = strchr(arg, '=');
        int src = source_index(first, arg, (size_t)(eq - arg));
        if (src < 0) {
            fprintf(stderr, "%s: --then %s: model %s has no stem '%.*s' (it has: %s)\n", prog, arg, first->name,
                    (int)(eq - arg), arg, known);
            return 64;
        }
        for (int i = 0; i < k; i++)
            if (c->v[i].source == src)
                return usage_error("--then %s: stem %s is chained twice (--then %s)", arg, first->sources[src],
                                   o->then[i]);
        ss_error err = {0};
        if (ss_model_resolve(eq + 1, c->path[k], sizeof c->path[k], &err) != SS_OK ||
            ss_model_peek(c->path[k], &c->info[k], &c->mem[k], &err) != SS_OK) {
            fprintf(stderr, "%s: --then %s: %s\n", prog, arg, err.msg);
            return ss_exit_code(err.code);
        }
        const ss_model_info *ci = &c->info[k];
        if (!ss_resample_possible(first->samplerate, ci->samplerate))
            return usage_error("--then %s: model %s runs at %d Hz, too far from model %s's %d Hz to resample", arg,
                               ci->name, ci->samplerate, first->name, first->samplerate);
        int cin = first->channels, cm = ci->channels;
        /* a model that runs each channel on its own takes any count, and gives
         * the file's (checked per file) */
        if (!first->channels_independent && !ci->channels_independent &&
            !(cin == cm || cin == 1 || cm == 1 || (cm == 2 && cin >= 3 && cin <= 8)))
            return usage_error("--then %s: model %s takes %d channels, and model %s's stems have %d", arg, ci->name,
                               cm, first->name, cin);
        c->v[k].source = src;
        c->n = k + 1;
    }
    return -1;
}

/* ---- models ------------------------------------------------------------------------ */

/* One folder of the model path, as --list-models shows it. */
typedef struct model_dir {
    char path[PATH_MAX];
    char **names;              /* its NAME.safetensors entries, sorted          */
    size_t n;
} model_dir;

typedef struct model_dirs {
    model_dir *v;
    size_t n;
    int nomem;
} model_dirs;

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* ss_model_search_dirs's callback: the folder and its .safetensors files
 * (a folder that does not exist is kept, empty, for the JSON's search path). */
static void add_model_dir(void *arg, const char *dir)
{
    model_dirs *d = arg;
    model_dir *v = realloc(d->v, (d->n + 1) * sizeof *v);
    if (!v) {
        d->nomem = 1;
        return;
    }
    d->v = v;
    model_dir *m = &v[d->n++];
    memset(m, 0, sizeof *m);
    snprintf(m->path, sizeof m->path, "%s", dir);
    DIR *dp = opendir(dir);
    if (!dp)
        return;
    struct dirent *e;
    while ((e = readdir(dp)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len <= 12 || e->d_name[0] == '.' || strcmp(e->d_name + len - 12, ".safetensors") != 0)
            continue;
        char **names = realloc(m->names, (m->n + 1) * sizeof *names);
        char *name = strdup(e->d_name);
        if (!names || !name) {
            free(name);
            if (names)
                m->names = names;
            d->nomem = 1;
            break;
        }
        m->names = names;
        m->names[m->n++] = name;
    }
    closedir(dp);
    if (m->n > 1)
        qsort(m->names, m->n, sizeof *m->names, cmp_str);
}

/* Is NAME (a file name) in a folder before `upto`?  Then -m NAME finds that one. */
static int shadowed(const model_dirs *d, size_t upto, const char *name)
{
    for (size_t i = 0; i < upto; i++) {
        for (size_t k = 0; k < d->v[i].n; k++)
            if (strcmp(d->v[i].names[k], name) == 0)
                return 1;
    }
    return 0;
}

/* Is folder i named earlier on the path too?  (Its models are listed once.) */
static int named_before(const model_dirs *d, size_t i)
{
    for (size_t k = 0; k < i; k++)
        if (strcmp(d->v[k].path, d->v[i].path) == 0)
            return 1;
    return 0;
}

/* --list-models: every NAME.safetensors on the model path, one per line (or
 * JSON), from its header alone (ss_model_peek: no weights are read).  A file
 * that cannot be read is listed with its error; the exit status is still 0
 * (74 only when standard output cannot be written, 70 when out of memory). */
static int list_models(int json)
{
    model_dirs d = {0};
    ss_model_search_dirs(add_model_dir, &d);
    cJSON *root = json ? cJSON_CreateObject() : NULL, *arr = NULL, *sp = NULL;
    int nomem = d.nomem || (json && !root), found = 0;
    if (root && !nomem) {
        arr = cJSON_AddArrayToObject(root, "models");
        sp = cJSON_AddArrayToObject(root, "search_path");
        nomem = !arr || !sp;
    }
    for (size_t i = 0; i < d.n && !nomem; i++) {
        if (sp && !cJSON_AddItemToArray(sp, cJSON_CreateString(d.v[i].path)))
            nomem = 1;
        for (size_t k = 0; k < d.v[i].n && !nomem && !named_before(&d, i); k++) {
            int hidden = shadowed(&d, i, d.v[i].names[k]);
            char path[PATH_MAX * 2];
            snprintf(path, sizeof path, "%s/%s", d.v[i].path, d.v[i].names[k]);
            struct stat sb;
            if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode))
                continue;
            found++;
            ss_model_info info;
            ss_error err = {0};
            ss_status st = ss_model_peek(path, &info, NULL, &err);
            char name[SS_MAX_NAME];
            snprintf(name, sizeof name, "%.*s", (int)(strlen(d.v[i].names[k]) - 12), d.v[i].names[k]);
            double kib = sb.st_size / 1024.0;
            if (!json) {
                if (st != SS_OK) {
                    printf("%s  error: %s\n", name, err.msg);
                    continue;
                }
                char stems[SS_MAX_SOURCES * SS_MAX_NAME];
                list_sources(&info, stems, sizeof stems);
                const char *chans = info.channels_independent ? "any channels" : info.channels == 1 ? "mono"
                                    : info.channels == 2 ? "stereo" : "multichannel";
                printf("%s  %s  %d stems (%s)  %d Hz  %s  %.1f %s  %s%s\n", name, info.architecture, info.n_sources,
                       stems, info.samplerate, chans, kib < 1024 ? kib : kib / 1024, kib < 1024 ? "KiB" : "MiB", path,
                       hidden ? "  (shadowed by an earlier one of that name)" : "");
                continue;
            }
            cJSON *m = cJSON_CreateObject();
            if (!m || !cJSON_AddItemToArray(arr, m)) {
                cJSON_Delete(m);
                nomem = 1;
                break;
            }
            cJSON_AddStringToObject(m, "name", name);
            cJSON_AddStringToObject(m, "path", path);
            cJSON_AddNumberToObject(m, "size_bytes", (double)sb.st_size);
            cJSON_AddBoolToObject(m, "shadowed", hidden);
            if (st != SS_OK) {
                cJSON_AddStringToObject(m, "error", err.msg);
                continue;
            }
            cJSON_AddNullToObject(m, "error");
            cJSON_AddStringToObject(m, "architecture", info.architecture);
            cJSON *src = cJSON_AddArrayToObject(m, "stems");
            for (int q = 0; src && q < info.n_sources; q++)
                cJSON_AddItemToArray(src, cJSON_CreateString(info.sources[q]));
            cJSON_AddNumberToObject(m, "samplerate", info.samplerate);
            cJSON_AddNumberToObject(m, "channels", info.channels);
            cJSON_AddBoolToObject(m, "channels_independent", info.channels_independent);
            cJSON_AddNumberToObject(m, "segment_seconds", (double)info.segment_num / (double)info.segment_den);
            cJSON_AddNumberToObject(m, "parameters", (double)info.parameters);
        }
    }
    char *text = root && !nomem ? cJSON_Print(root) : NULL;
    if (json && !nomem && !text)
        nomem = 1;
    if (text)
        printf("%s\n", text);
    free(text);
    cJSON_Delete(root);
    if (!json && !nomem && !found) {
        fprintf(stderr, "%s: no models found; searched:", prog);
        for (size_t i = 0; i < d.n; i++)
            fprintf(stderr, "%s %s", i ? "," : "", d.v[i].path);
        fprintf(stderr, " (install one with scripts/download-model.sh NAME, or set STEMSPLIT_MODEL_PATH)\n");
    }
    for (size_t i = 0; i < d.n; i++) {
        for (size_t k = 0; k < d.v[i].n; k++)
            free(d.v[i].names[k]);
        free(d.v[i].names);
    }
    free(d.v);
    if (nomem) {
        fprintf(stderr, "%s: --list-models: out of memory\n", prog);
        return 70;
    }
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "%s: --list-models: cannot write standard output: %s\n", prog, strerror(errno));
        return 74;
    }
    return 0;
}

/* ---- main ---------------------------------------------------------------------------- */

static int mkdir_p(const char *path)
{
    char buf[PATH_MAX];
    if ((size_t)snprintf(buf, sizeof buf, "%s", path) >= sizeof buf)
        return -1;
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || !*p) {
            char c = *p;
            *p = '\0';
            if (mkdir(buf, 0777) != 0 && errno != EEXIST)
                return -1;
            *p = c;
            if (!c)
                break;
        }
    }
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode) && access(path, W_OK | X_OK) == 0 ? 0 : -1;
}

/* The input list: arguments, then --files-from, expanded (folders, -r). */
static int collect_inputs(const options *o, const char *model_name, int argc, char **argv, ss_batch_list *l)
{
    ss_error err = {0};
    ss_batch_scan sc = {.recursive = o->recursive};
    /* never read our own output: the output folder as a sub-folder of an input
     * folder, and the fixed first part of the template in it (OUT/MODEL with
     * the default), wherever the output folder is */
    ss_batch_scan_skip(&sc, o->out_dir);
    char fixed[PATH_MAX], sub[PATH_MAX];
    if (ss_template_fixed_prefix(o->filename, model_name, fixed, sizeof fixed) > 0 &&
        (size_t)snprintf(sub, sizeof sub, "%s/%s", o->out_dir, fixed) < sizeof sub)
        ss_batch_scan_skip(&sc, sub);
    int stdin_inputs = 0;
    for (int i = optind; i < argc; i++) {
        stdin_inputs += strcmp(argv[i], "-") == 0;
        if (ss_batch_add(l, argv[i], &sc, &err) != SS_OK)
            goto fail;
    }
    if (o->files_from) {
        if (strcmp(o->files_from, "-") == 0 && stdin_inputs)
            return usage_error("%s", "--files-from - and the input - cannot both read standard input");
        size_t before = l->n;
        if (ss_batch_add_from(l, o->files_from, &sc, &err) != SS_OK)
            goto fail;
        for (size_t i = before; i < l->n; i++) {
            if (strcmp(l->v[i].path, "-") != 0)
                continue;
            if (strcmp(o->files_from, "-") == 0)
                return usage_error("%s", "--files-from -: the list names - (standard input), which it is reading");
            stdin_inputs++;
        }
    }
    if (stdin_inputs > 1)
        return usage_error("%s", "- (standard input) is given more than once");
    size_t usable = 0;
    for (size_t i = 0; i < l->n; i++)
        usable += !l->v[i].skip;
    if (usable == 0) {
        for (size_t i = 0; i < l->n; i++)
            fprintf(stderr, "%s: %s: skipped (%s)\n", prog, l->v[i].path, l->v[i].error);
        fprintf(stderr, "%s: no audio files found in the inputs given (%zu folder%s searched%s%s)\n", prog, l->dirs,
                l->dirs == 1 ? "" : "s", o->recursive || l->dirs == 0 ? "" : "; -r descends into sub-folders",
                l->n ? "; the files above are in formats no reader here opens" : "");
        return 66;
    }
    return -1;
fail:
    fprintf(stderr, "%s: %s\n", prog, err.msg);
    return ss_exit_code(err.code);
}

/* ---- --stream ---------------------------------------------------------------------- */

/* --stream: raw PCM from standard input through a model that runs frame by
 * frame to standard output (src/stream.c).  Returns the exit status. */
static int stream_main(const options *o, int argc, char **argv)
{
    if (optind < argc)
        return usage_error("--stream reads standard input only; '%s': no input files with --stream", argv[optind]);
    if (o->file_opt)
        return usage_error("--stream: --%s is for files (the stream's stem goes to standard output)", o->file_opt);
    if (!o->model)
        return usage_error("%s", "--stream needs -m MODEL (one that runs frame by frame, e.g. deepfilternet3)");
    int prec = ss_precision_parse(o->precision);
    if (prec < 0)
        return usage_error("--precision '%s': expected auto, fp32, tf32, bf16, fp16 or mixed", o->precision);
    ss_error err = {0};
    char model_path[PATH_MAX];
    ss_model_info peek;
    ss_mem_estimate mem;
    if (ss_model_resolve(o->model, model_path, sizeof model_path, &err) != SS_OK ||
        ss_model_peek(model_path, &peek, &mem, &err) != SS_OK) {
        fprintf(stderr, "%s: %s\n", prog, err.msg);
        return ss_exit_code(err.code);
    }
    if (peek.chunking != SS_CHUNK_STREAM) {
        fprintf(stderr, "%s: --stream: model %s (%s) needs the whole track, it does not run frame by frame "
                "(--stream takes a model that does, e.g. deepfilternet3)\n", prog, peek.name, peek.architecture);
        return 64;
    }
    ss_backend_params bp = {.device = 0, .threads = o->threads, .precision = (ss_precision)prec};
    ss_backend *be = NULL;
    ss_model *model = NULL;
    char note[512], warn[512];
    int rc = 0;
    if (ss_backend_open_for(o->device, &bp, ss_mem_need(&mem, 1), &be, note, sizeof note, warn, sizeof warn, &err) !=
        SS_OK) {
        fprintf(stderr, "%s: %s\n", prog, err.msg);
        rc = ss_exit_code(err.code);
        goto out;
    }
    const ss_device_info *dev = ss_backend_device(be);
    if (warn[0])
        fprintf(stderr, "%s: %s; using %s\n", prog, warn, strcmp(dev->backend, "cpu") == 0 ? "the CPU" : dev->name);
    if (o->verbose)
        fprintf(stderr, "%s: device %s:%d %s, precision %s, %d threads\n", prog, dev->backend, dev->index, dev->name,
                ss_precision_name(ss_backend_precision(be)), ss_backend_threads(be));
    if (ss_model_load(model_path, be, &model, &err) != SS_OK) {
        fprintf(stderr, "%s: %s\n", prog, err.msg);
        rc = ss_exit_code(err.code);
        goto out;
    }
    ss_stream_params sp = {.format = (ss_pcm_format)ss_pcm_format_parse(o->stream_format), .rate = o->stream_rate,
                           .channels = o->stream_channels, .in_fd = 0, .out_fd = 1, .in_name = "standard input",
                           .out_name = "standard output", .source = 0, .verbose = o->verbose,
                           .cancel = &cancel_signal};
    if (ss_stream_check(model, &sp, &err) != SS_OK) {
        rc = usage_error("%s", err.msg);
        goto out;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;          /* no SA_RESTART: a blocked read() returns EINTR */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);           /* a reader that has gone: EPIPE, exit 74 with a message */
    signal(SIGXFSZ, SIG_IGN);           /* a file-size limit: a write error, 74 */
    ss_status s = ss_stream_run(model, be, &sp, NULL, &err);
    if (s != SS_OK) {
        if (cancel_signal) {
            rc = 128 + cancel_signal;
            fprintf(stderr, "%s: --stream: interrupted by %s\n", prog, cancel_signal == SIGTERM ? "SIGTERM" : "SIGINT");
        } else {
            fprintf(stderr, "%s: %s\n", prog, err.msg);
            rc = ss_exit_code(s);
        }
    }
out:
    ss_model_free(model);
    ss_backend_close(be);
    ss_cpu_backend_cleanup();
    return rc;
}

int main(int argc, char **argv)
{
    ss_cpu_blas_preflight(argv);      /* may re-exec with faster BLAS kernels */
    if (argc > 1 && strcmp(argv[1], "eval") == 0)
        return ss_eval_main(argc - 1, argv + 1);
    options o = defaults;
    const ss_settings *env = ss_settings_get();
    if (env->model)
        o.model = env->model;
    if (env->device)
        o.device = env->device;
    int rc = parse_args(argc, argv, &o);
    if (rc >= 0)
        return rc;
    if (o.json && !o.list_models)
        return usage_error("%s", "--json goes with --list-models (reports of a run: --report-json FILE)");
    if (o.list_models)
        return list_models(o.json);
    if (o.list_devices) {
        list_devices();
        return 0;
    }
    if (o.stream_opt && !o.stream)
        return usage_error("%s goes with --stream", o.stream_opt);
    if (o.stream)
        return stream_main(&o, argc, argv);
    if (optind >= argc && !o.files_from)
        return usage_error("no input files%s", " (give audio files, folders, --files-from LIST, or - for standard input)");
    ss_error err = {0};
    ss_sep_params sp = {.out_dir = o.out_dir, .filename = o.filename};
    int v;
    if ((v = ss_file_format_parse(o.format)) < 0)
        return usage_error("--format '%s': expected wav, flac, mp3, opus or ogg", o.format);
    sp.format = (ss_file_format)v;
    if (o.bitrate && !ss_file_format_lossy(sp.format))
        return usage_error("--bitrate %d: --format %s is lossless and takes no bitrate (mp3, opus and ogg do)",
                           o.bitrate, o.format);
    sp.bitrate = o.bitrate;
    if ((v = ss_sample_format_parse(o.sample_format)) < 0)
        return usage_error("--sample-format '%s': expected s16, s24 or f32", o.sample_format);
    sp.sample_format = (ss_sample_format)v;
    if (sp.format == SS_FILE_FLAC && sp.sample_format == SS_SAMPLE_F32)
        return usage_error("%s: FLAC cannot store 32-bit float samples; use --sample-format s16 or s24",
                           "--format flac --sample-format f32");
    if ((v = ss_clip_parse(o.clip)) < 0)
        return usage_error("--clip '%s': expected rescale, clamp or none", o.clip);
    sp.clip = (ss_clip)v;
    sp.threads = o.threads;
    sp.verbose = o.verbose;
    int prec = ss_precision_parse(o.precision);
    if (prec < 0)
        return usage_error("--precision '%s': expected auto, fp32, tf32, bf16, fp16 or mixed", o.precision);
    if (ss_template_check(o.filename, &err) != SS_OK) {
        fprintf(stderr, "%s: %s\n", prog, err.msg);
        return 64;
    }
    char model_path[PATH_MAX];
    if (!o.model) {      /* as demucs: htdemucs, when it is installed */
        if (ss_model_resolve("htdemucs", model_path, sizeof model_path, &err) != SS_OK)
            return usage_error("no model given, and the default model htdemucs is not installed: install it with "
                               "%s (offline: STEMSPLIT_DOWNLOAD_BASE=file:///folder/with/the/th/files/; or convert a "
                               "checkpoint with scripts/convert-demucs.py), or give -m MODEL (e.g. -m bandsplit4) "
                               "or set STEMSPLIT_MODEL", "scripts/download-model.sh htdemucs");
        ss_error_clear(&err);
        o.model = "htdemucs";
    }

    /* the report's file first: one that cannot be written is known before any work */
    ss_report_out *rep_out = NULL;
    if (o.report_json && ss_report_out_open(o.report_json, &rep_out, &err) != SS_OK) {
        fprintf(stderr, "%s: %s\n", prog, err.msg);
        return ss_exit_code(err.code);
    }

    ss_batch_list inputs = {0};

    /* the model's header, then the device (decided here, once, with the model's
     * memory estimate), then the weights: loaded once, for every file */
    ss_model_info peek;
    ss_mem_estimate mem;
    if (ss_model_resolve(o.model, model_path, sizeof model_path, &err) != SS_OK ||
        ss_model_peek(model_path, &peek, &mem, &err) != SS_OK) {
        fprintf(stderr, "%s: %s\n", prog, err.msg);
        ss_report_out_abort(rep_out);
        return ss_exit_code(err.code);
    }
    /* Opus's range is per channel: where the stems have each file's own
     * channel count, the writer checks it per file */
    if (o.bitrate && !(peek.channels_independent && sp.format == SS_FILE_OPUS) &&
        ss_bitrate_check(sp.format, o.bitrate, peek.channels, &err) != SS_OK) {
        fprintf(stderr, "%s: %s\n", prog, err.msg);
        ss_report_out_abort(rep_out);
        return 64;
    }
    chain_setup *chain = calloc(1, sizeof *chain);
    if (!chain) {
        fprintf(stderr, "%s: out of memory\n", prog);
        ss_report_out_abort(rep_out);
        return 70;
    }
    if ((rc = check_chain(&o, &peek, chain)) >= 0) {
        free(chain);
        ss_report_out_abort(rep_out);
        return rc;
    }
    uint64_t mem_need = ss_mem_need(&mem, 1);      /* every model is loaded at once */
    for (int k = 0; k < chain->n; k++)
        mem_need += ss_mem_need(&chain->mem[k], 1);
    ss_backend_params bp = {.device = 0, .threads = o.threads, .precision = (ss_precision)prec};
    ss_backend *be = NULL;
    ss_model *model = NULL;
    ss_report *rep = NULL;
    char note[512], warn[512];
    if (ss_backend_open_for(o.device, &bp, mem_need, &be, note, sizeof note, warn, sizeof warn, &err) != SS_OK) {
        fprintf(stderr, "%s: %s\n", prog, err.msg);
        rc = ss_exit_code(err.code);
        goto out;
    }
    const ss_device_info *dev = ss_backend_device(be);
    if (warn[0])
        fprintf(stderr, "%s: %s; using %s\n", prog, warn,
                strcmp(dev->backend, "cpu") == 0 ? "the CPU" : dev->name);
    if (o.verbose) {
        fprintf(stderr, "%s: %s\n", prog, note);
        fprintf(stderr, "%s: device %s:%d %s, memory %.1f GiB (%.1f GiB free), precision %s, %d threads\n", prog,
                dev->backend, dev->index, dev->name, dev->mem_total / 1073741824.0, dev->mem_free / 1073741824.0,
                ss_precision_name(ss_backend_precision(be)), ss_backend_threads(be));
        if (prec != SS_PREC_FP32 && prec != SS_PREC_AUTO && ss_backend_precision(be) == SS_PREC_FP32)
            fprintf(stderr, "%s: --precision %s: the %s backend computes in fp32\n", prog, o.precision, dev->backend);
    }
    if (ss_model_load(model_path, be, &model, &err) != SS_OK) {
        fprintf(stderr, "%s: %s\n", prog, err.msg);
        rc = ss_exit_code(err.code);
        goto out;
    }
    const ss_model_info *info = ss_model_get_info(model);
    for (int k = 0; k < chain->n; k++) {
        if (ss_model_load(chain->path[k], be, &chain->v[k].model, &err) != SS_OK) {
            fprintf(stderr, "%s: --then %s: %s\n", prog, o.then[k], err.msg);
            rc = ss_exit_code(err.code);
            goto out;
        }
    }
    if (o.wiener > 0) {            /* LarsNet's option: every model of the chain that has it */
        int took = ss_model_option(model, "wiener", o.wiener, &err) == SS_OK;
        for (int k = 0; k < chain->n; k++) {
            ss_error e2 = {0};
            took += ss_model_option(chain->v[k].model, "wiener", o.wiener, &e2) == SS_OK;
        }
        if (!took) {
            rc = usage_error("--wiener: %s", err.msg);
            goto out;
        }
    }
    if (strcmp(dev->backend, "cpu") != 0 && dev->mem_free > 0) {
        /* device memory: lower --batch until the model's estimate fits the free memory */
        int asked = o.batch;
        uint64_t need = ss_mem_need(&mem, o.batch);
        while (o.batch > 1 && need > dev->mem_free)
            need = ss_mem_need(&mem, --o.batch);
        if (o.verbose || o.batch != asked)
            fprintf(stderr, "%s: estimated device memory for batch %d: %.2f GiB (%.1f GiB free)%s\n", prog, o.batch,
                    need / 1073741824.0, dev->mem_free / 1073741824.0,
                    o.batch != asked ? "; --batch lowered to fit" : "");
    } else if (o.verbose) {
        /* host memory: the same estimate (weights, workspace, transfer buffers) */
        fprintf(stderr, "%s: estimated memory for batch %d: %.2f GiB\n", prog, o.batch,
                ss_mem_need(&mem, o.batch) / 1073741824.0);
    }
    if ((rc = choose_stems(&o, info, &sp)) >= 0)
        goto out;
    /* MSST's chunking: --overlap F as num_overlap chunks per chunk length (step
     * = chunk // num_overlap), else the model's; it has no random shifts */
    int num_overlap = 0, msst = ss_model_chunking(model) == SS_CHUNK_MSST;
    if ((msst || ss_model_chunking(model) == SS_CHUNK_STFT_BLOCKS || ss_model_chunking(model) == SS_CHUNK_STREAM) &&
        o.shifts > 0) {
        rc = usage_error("--shifts %d: model %s uses %s, which has no random shifts (leave --shifts out)", o.shifts,
                         info->name, msst ? "MSST's chunking" : ss_model_chunking(model) == SS_CHUNK_STREAM
                                                                    ? "one stream per track"
                                                                    : "whole-track STFT blocks");
        goto out;
    }
    if (msst && o.overlap_set) {
        num_overlap = (int)lround(1.0 / (1.0 - o.overlap));
        if (num_overlap < 1) {
            rc = usage_error("--overlap %g: gives num_overlap %d for model %s's MSST chunking (must be >= 1)",
                             o.overlap, num_overlap, info->name);
            goto out;
        }
    }
    if (o.verbose) {
        char known[SS_MAX_SOURCES * SS_MAX_NAME];
        list_sources(info, known, sizeof known);
        fprintf(stderr, "%s: model %s (%s, %s), %llu parameters, %d Hz, %d channels, segment %.2f s, sources %s\n",
                prog, info->name, info->architecture, model_path, (unsigned long long)info->parameters,
                info->samplerate, info->channels, (double)info->segment_num / info->segment_den, known);
        if (msst) {
            int64_t chunk = o.segment > 0 ? llround(o.segment * info->samplerate) : info->segment_length;
            int no = num_overlap ? num_overlap : info->overlap_default;
            fprintf(stderr, "%s: MSST chunking: chunk %lld samples, num_overlap %d (step %lld), batch %d\n", prog,
                    (long long)chunk, no, (long long)(chunk / no), o.batch);
        } else if (ss_model_chunking(model) == SS_CHUNK_STFT_BLOCKS) {
            ss_stft_blocks g;
            if (ss_model_stft_blocks(model, &g, &err) == SS_OK)
                fprintf(stderr, "%s: whole-track STFT blocks: n_fft %d, hop %d, %d frames a block, batch %d\n", prog,
                        g.n_fft, g.hop, g.block, o.batch);
        } else if (ss_model_chunking(model) == SS_CHUNK_STREAM) {
            ss_stream_geom g;
            if (ss_model_stream_geom(model, &g, &err) == SS_OK)
                fprintf(stderr, "%s: one stream per track, pieces of %lld samples (--batch does not apply)\n", prog,
                        (long long)g.block);
        } else {
            fprintf(stderr, "%s: overlap %.2f, shifts %d, batch %d\n", prog, o.overlap, o.shifts, o.batch);
        }
        for (int k = 0; k < chain->n; k++) {
            const ss_model_info *ci = ss_model_get_info(chain->v[k].model);
            char stems[SS_MAX_SOURCES * SS_MAX_NAME];
            list_sources(ci, stems, sizeof stems);
            fprintf(stderr, "%s: then %s: model %s (%s, %s), %llu parameters, %d Hz, %d channels, segment %.2f s, "
                    "sources %s\n", prog, info->sources[chain->v[k].source], ci->name, ci->architecture,
                    chain->path[k], (unsigned long long)ci->parameters, ci->samplerate, ci->channels,
                    (double)ci->segment_num / ci->segment_den, stems);
        }
    }

    /* inputs (after the model: its name is part of the output folders never searched) */
    if ((rc = collect_inputs(&o, info->name, argc, argv, &inputs)) >= 0)
        goto out;
    rc = 0;
    if (o.report_json && strcmp(o.report_json, "-") != 0) {
        const ss_batch_input *in = ss_batch_find_input(&inputs, o.report_json);
        if (in) {
            fprintf(stderr, "%s: --report-json %s would be written over the input %s; nothing was separated\n",
                    prog, o.report_json, in->path);
            rc = 64;
            goto out;
        }
    }

    /* the whole list, before sharding, so that every shard refuses the same clashes */
    if (ss_batch_check_collisions(model, &sp, &inputs, &err) != SS_OK) {
        fprintf(stderr, "%s: %s\n", prog, err.msg);
        rc = ss_exit_code(err.code);
        goto out;
    }
    size_t all_inputs = inputs.n;
    if (o.shard_count > 0 && ss_batch_shard(&inputs, o.shard_index, o.shard_count, &err) != SS_OK) {
        fprintf(stderr, "%s: %s\n", prog, err.msg);
        rc = ss_exit_code(err.code);
        goto out;
    }
    if (o.verbose)
        fprintf(stderr, "%s: %zu input file%s%s\n", prog, inputs.n, inputs.n == 1 ? "" : "s",
                o.shard_count ? " in this shard" : "");
    if (mkdir_p(o.out_dir) != 0) {
        fprintf(stderr, "%s: %s: cannot create or write the output directory: %s\n", prog, o.out_dir,
                strerror(errno ? errno : EACCES));
        rc = 73;
        goto out;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    ss_audio_set_cancel(&cancel_signal);   /* reading a pipe, FIFO or device stops on them too */
    signal(SIGXFSZ, SIG_IGN);      /* a file-size limit becomes a write error, not a kill */

    sp.engine = (ss_engine_params){.segment = o.segment, .overlap = o.overlap, .num_overlap = num_overlap,
                                   .shifts = o.shifts,
                                   .seed = o.seed, .batch = o.batch, .cancel = &cancel_signal};
    /* chained models: their own chunking (--segment, --overlap and --shifts are the first model's) */
    for (int k = 0; k < chain->n; k++)
        chain->v[k].engine = (ss_engine_params){.overlap = defaults.overlap, .seed = o.seed, .batch = o.batch,
                                                .cancel = &cancel_signal};
    sp.chain = chain->v;
    sp.n_chain = chain->n;
    if (!(rep = ss_report_new())) {
        fprintf(stderr, "%s: out of memory\n", prog);
        rc = 70;
        goto out;
    }
    ss_report_set_device(rep, dev, ss_backend_precision(be), ss_backend_threads(be));
    ss_report_set_model(rep, info);
    for (int k = 0; k < chain->n; k++)
        ss_report_add_chain_model(rep, info->sources[chain->v[k].source], ss_model_get_info(chain->v[k].model));
    if (o.shard_count > 0)
        ss_report_set_shard(rep, o.shard_index, o.shard_count, (long long)all_inputs);
    for (size_t i = 0; i < inputs.n; i++)
        if (!ss_report_add(rep, inputs.v[i].path)) {
            fprintf(stderr, "%s: out of memory\n", prog);
            rc = 70;
            goto out;
        }
    ss_batch_params bparams = {.sep = &sp, .skip_existing = o.skip_existing, .no_clobber = o.no_clobber,
                               .pipeline = 1, .quiet = o.quiet,
                               .progress = !o.quiet && isatty(2), .prog = prog, .cancel = &cancel_signal};
    ss_status first_failure = SS_OK;
    double t0 = ss_seconds();
    if (ss_batch_run(model, be, &bparams, &inputs, rep, &first_failure, &err) != SS_OK) {
        fprintf(stderr, "%s: %s\n", prog, err.msg);
        rc = ss_exit_code(err.code);
        goto out;
    }
    rc = ss_exit_code(first_failure);
    if (cancel_signal) {
        rc = 128 + cancel_signal;
        int left = ss_report_count(rep, SS_FILE_SKIPPED);
        fprintf(stderr, "%s: interrupted by %s; finished tracks are kept, temporary files removed%s\n", prog,
                cancel_signal == SIGTERM ? "SIGTERM" : "SIGINT",
                left || ss_report_count(rep, SS_FILE_FAILED) ? "; rerun with --skip-existing to continue" : "");
    }
    double wall = ss_seconds() - t0;
    if (!o.quiet)
        ss_report_print_total(rep, wall, stderr);
    if (rep_out) {
        ss_status ws = ss_report_out_write(rep_out, rep, wall, &err);
        rep_out = NULL;
        if (ws != SS_OK) {
            fprintf(stderr, "%s: %s\n", prog, err.msg);
            if (rc == 0)
                rc = ss_exit_code(err.code);
        }
    }
out:
    ss_report_out_abort(rep_out);
    ss_report_free(rep);
    ss_batch_list_free(&inputs);
    ss_model_free(model);
    for (int k = 0; k < chain->n; k++)
        ss_model_free(chain->v[k].model);
    free(chain);
    ss_backend_close(be);
    ss_cpu_backend_cleanup();
    return rc;
}
