/* make-audio-seeds.c - write the audio seeds in corpus/audio with libsndfile:
 * a few dozen frames in every container and sample type worth decoding.
 *   cc -o /tmp/mas tests/fuzz/make-audio-seeds.c -lsndfile && /tmp/mas tests/fuzz/corpus/audio */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <sndfile.h>

static void seed(const char *dir, const char *name, int format, int channels, int rate, int frames, int special)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    SF_INFO info;
    memset(&info, 0, sizeof info);
    info.samplerate = rate;
    info.channels = channels;
    info.format = format;
    SNDFILE *sf = sf_open(path, SFM_WRITE, &info);
    if (!sf) {
        fprintf(stderr, "%s: %s (skipped)\n", name, sf_strerror(NULL));
        return;
    }
    float buf[64 * 8];
    for (int i = 0; i < frames * channels; i++)
        buf[i] = 0.5f * sinf((float)i * 0.3f);
    if (special) {
        buf[1] = NAN;
        buf[3] = INFINITY;
    }
    sf_writef_float(sf, buf, frames);
    sf_close(sf);
}

int main(int argc, char **argv)
{
    const char *d = argc > 1 ? argv[1] : ".";
    seed(d, "wav_s16_stereo.wav", SF_FORMAT_WAV | SF_FORMAT_PCM_16, 2, 44100, 32, 0);
    seed(d, "wav_u8_mono.wav", SF_FORMAT_WAV | SF_FORMAT_PCM_U8, 1, 8000, 32, 0);
    seed(d, "wav_s24_3ch.wav", SF_FORMAT_WAV | SF_FORMAT_PCM_24, 3, 48000, 16, 0);
    seed(d, "wav_f32_nan.wav", SF_FORMAT_WAV | SF_FORMAT_FLOAT, 2, 44100, 16, 1);
    seed(d, "wav_f64.wav", SF_FORMAT_WAV | SF_FORMAT_DOUBLE, 1, 22050, 16, 0);
    seed(d, "wav_ulaw.wav", SF_FORMAT_WAV | SF_FORMAT_ULAW, 1, 8000, 32, 0);
    seed(d, "wav_ima.wav", SF_FORMAT_WAV | SF_FORMAT_IMA_ADPCM, 1, 8000, 64, 0);
    seed(d, "wav_msadpcm.wav", SF_FORMAT_WAV | SF_FORMAT_MS_ADPCM, 2, 8000, 64, 0);
    seed(d, "wavex.wav", SF_FORMAT_WAVEX | SF_FORMAT_PCM_16, 2, 44100, 16, 0);
    seed(d, "rf64.wav", SF_FORMAT_RF64 | SF_FORMAT_PCM_16, 1, 44100, 16, 0);
    seed(d, "w64.w64", SF_FORMAT_W64 | SF_FORMAT_PCM_16, 1, 44100, 16, 0);
    seed(d, "aiff.aiff", SF_FORMAT_AIFF | SF_FORMAT_PCM_16, 2, 44100, 16, 0);
    seed(d, "aifc_float.aiff", SF_FORMAT_AIFF | SF_FORMAT_FLOAT, 1, 44100, 16, 0);
    seed(d, "au.au", SF_FORMAT_AU | SF_FORMAT_PCM_16, 1, 8000, 16, 0);
    seed(d, "caf.caf", SF_FORMAT_CAF | SF_FORMAT_PCM_16, 2, 44100, 16, 0);
    seed(d, "flac16.flac", SF_FORMAT_FLAC | SF_FORMAT_PCM_16, 2, 44100, 64, 0);
    seed(d, "flac24_mono.flac", SF_FORMAT_FLAC | SF_FORMAT_PCM_24, 1, 96000, 32, 0);
    seed(d, "ogg.ogg", SF_FORMAT_OGG | SF_FORMAT_VORBIS, 1, 8000, 64, 0);
    seed(d, "opus.opus", SF_FORMAT_OGG | SF_FORMAT_OPUS, 1, 48000, 64, 0);
    seed(d, "raw_in_nist.nist", SF_FORMAT_NIST | SF_FORMAT_PCM_16, 1, 16000, 16, 0);
    seed(d, "voc.voc", SF_FORMAT_VOC | SF_FORMAT_PCM_U8, 1, 8000, 16, 0);
    seed(d, "ircam.sf", SF_FORMAT_IRCAM | SF_FORMAT_PCM_16, 1, 8000, 16, 0);
    seed(d, "paf.paf", SF_FORMAT_PAF | SF_FORMAT_PCM_24, 1, 8000, 16, 0);
    seed(d, "svx.8svx", SF_FORMAT_SVX | SF_FORMAT_PCM_16, 1, 8000, 16, 0);
    seed(d, "mat5.mat", SF_FORMAT_MAT5 | SF_FORMAT_FLOAT, 1, 8000, 16, 0);
    seed(d, "sd2_htk.htk", SF_FORMAT_HTK | SF_FORMAT_PCM_16, 1, 8000, 16, 0);
    seed(d, "one_frame.wav", SF_FORMAT_WAV | SF_FORMAT_PCM_16, 1, 44100, 1, 0);
    seed(d, "zero_frames.wav", SF_FORMAT_WAV | SF_FORMAT_PCM_16, 2, 44100, 0, 0);
    return 0;
}
