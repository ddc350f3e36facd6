/* fuzz_audio.c - libFuzzer harness for the audio decode path.
 *
 * Opens the input as an audio file through ss_audio_open_memory() (libsndfile
 * virtual I/O on the fuzzer's buffer), then does what separate.c does with
 * it: a first pass reading blocks to the end (with the NaN/Inf check on the
 * mono mix), a rewind, a second pass that must deliver the same number of
 * frames, and the first 256 frames through the resampler to 44.1 kHz.  Frames are
 * capped so a header claiming hours of audio cannot time the fuzzer out.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "audio.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define BLOCK 4096
#define MAX_SAMPLES (1 << 20)
#define MAX_FRAMES(ch) (MAX_SAMPLES / (ch))

/* Read up to about MAX_SAMPLES samples; returns frames read, or -1 after an error. */
static int64_t pass(ss_audio_reader *r, int channels, float *buf, int64_t *nonfinite)
{
    int64_t total = 0;
    while (total < MAX_FRAMES(channels)) {
        int64_t got = 0;
        ss_error err = {0};
        if (ss_audio_read(r, buf, BLOCK, &got, &err) != SS_OK) {
            if (err.code != SS_E_IO || !err.msg[0])
                abort();
            return -1;
        }
        if (got < 0 || got > BLOCK)
            abort();
        if (got == 0)
            break;
        for (int64_t i = 0; i < got; i++) {
            double v = 0;
            for (int c = 0; c < channels; c++)
                v += buf[i * channels + c];
            if (!isfinite(v))
                (*nonfinite)++;
        }
        total += got;
    }
    return total;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ss_audio_reader *r = NULL;
    ss_audio_info info;
    ss_error err = {0};
    if (ss_audio_open_memory(data, size, "fuzz.wav", &r, &info, &err) != SS_OK) {
        if (r || err.code == SS_OK || !err.msg[0])
            abort();
        return 0;
    }
    if (info.channels < 1 || info.samplerate < 1 || !memchr(info.format, '\0', sizeof info.format))
        abort();
    if (info.channels > 1024) { /* libsndfile allows up to 1024 (SF_MAX_CHANNELS) */
        ss_audio_close(r);
        return 0;
    }
    float *buf = malloc(sizeof(float) * BLOCK * (size_t)info.channels);
    if (!buf)
        abort();
    int64_t bad1 = 0, bad2 = 0;
    int64_t n1 = pass(r, info.channels, buf, &bad1);
    if (n1 >= 0 && n1 < MAX_FRAMES(info.channels) && n1 < info.frames)
        abort(); /* a short read must have been reported as an error */
    if (n1 >= 0 && ss_audio_rewind(r, &err) == SS_OK) {
        int64_t n2 = pass(r, info.channels, buf, &bad2);
        if (n2 >= 0 && n2 < n1 && info.frames >= 0)
            abort(); /* the second pass must see the same audio */
    }
    if (n1 > 0 && info.channels <= 8) {
        int64_t n = n1 < 256 ? n1 : 256;
        ss_resampler *rs = NULL;
        ss_error e2 = {0};
        if (ss_audio_rewind(r, &e2) == SS_OK &&
            ss_resampler_new(info.channels, info.samplerate, 44100, n, &rs, &e2) == SS_OK) {
            int64_t got = 0;
            if (ss_audio_read(r, buf, n, &got, &e2) == SS_OK && got == n) {
                int64_t cap = ss_resampler_max_out(rs, n), made = 0;
                float *out = malloc(sizeof(float) * (size_t)(cap ? cap : 1) * (size_t)info.channels);
                if (!out)
                    abort();
                if (ss_resampler_push(rs, buf, n, out, cap, &made, &e2) == SS_OK &&
                    made != ss_resampled_length(n, info.samplerate, 44100))
                    abort();
                free(out);
            }
        }
        ss_resampler_free(rs);
    }
    free(buf);
    ss_audio_close(r);
    return 0;
}
