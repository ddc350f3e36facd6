/* test_roformer.c - BS-RoFormer and Mel-Band RoFormer (models/roformer/roformer.c).
 *
 * 1. Parity: every case folder under tests/fixtures/roformer/ (or
 *    $SS_ROFORMER_FIXTURES) holding ref.safetensors with forward_in [1, C, L]
 *    and forward_out [1, S, C, L] made by the PyTorch reference: the model is
 *    the case's model.safetensors when there is one, else model.ckpt +
 *    config.yaml converted with scripts/convert-msst.py (SKIP without python3
 *    or the converter).  One forward pass on the CPU; relative L2 per stem
 *    <= 1e-4.
 *    CLI parity (CPU build only): the real binary ($STEMSPLIT) on mix.wav
 *    through MSST's chunking, each stem against `stems` [S, C, L] (MSST's
 *    demix + denormalisation) at relative L2 <= 1e-4; a single-target model's
 *    residual against mix - target; --batch 3 -j 1 gives --batch 1 -j 2's bits.
 * 2. Files written here (no python): a small BS and Mel model load and run
 *    (batch 2 gives each item what batch 1 gives it; four passes with the
 *    same arguments give the same bits, the last two a recorded graph and its
 *    replay where the backend records), and the refusals: a
 *    missing or stray tensor, an unsupported metadata key, Mel bands that are
 *    not runs of consecutive bins -> SS_E_DATA naming the tensor or key.
 */
#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sndfile.h>

#include "../src/model.h"
#include "../src/safetensors.h"
#include "st_write.h"
#include "test.h"

/* the backend every model here runs on (test_cuda_emu_roformer.c: the emulated CUDA one) */
#ifndef RF_DEVICE
#define RF_DEVICE "cpu"
#define RF_PREFIX "roformer"
#endif

#include "msst_fixtures.h"

/* ---- 2. small files written here -------------------------------------------------- */

/* A tiny model: dim 8, depth 2 (skip connections), 1 time + 1 freq block, 2 heads
 * of 4, stereo, 2 stems, n_fft 16 (F 9), hop 5.  BS: bands 3 + 2 + 4;
 * Mel: bands of bins [0,4), [3,7), [6,9) (overlapping). */
/* a [d0] or [d0, d1] tensor */
static void add(gen *g, const char *name, int64_t d0, int64_t d1, float base, float spread)
{
    add4(g, name, d0, d1, 0, 0, base, spread);
}

static const int mel_lo[3] = {0, 3, 6}, mel_hi[3] = {4, 7, 9};

static void gen_model(gen *g, int mel)
{
    char n[200];
    int D = 8, C = 2, K = 3, E = 8, bs_w[3] = {3, 2, 4};
    memset(g, 0, sizeof *g);
    g->rng = 12345u;
    for (int k = 0; k < K; k++) {
        int w = 2 * C * (mel ? mel_hi[k] - mel_lo[k] : bs_w[k]);
        snprintf(n, sizeof n, "band_split.to_features.%d.0.gamma", k), add(g, n, w, 0, 1.0f, 0.4f);
        snprintf(n, sizeof n, "band_split.to_features.%d.1.weight", k), add(g, n, D, w, 0.0f, 0.8f);
        snprintf(n, sizeof n, "band_split.to_features.%d.1.bias", k), add(g, n, D, 0, 0.0f, 0.2f);
    }
    for (int i = 0; i < 2; i++)
        for (int t = 0; t < 2; t++) {
            snprintf(n, sizeof n, "layers.%d.%d.layers.0.0.norm.gamma", i, t), add(g, n, D, 0, 1.0f, 0.4f);
            snprintf(n, sizeof n, "layers.%d.%d.layers.0.0.to_qkv.weight", i, t), add(g, n, 3 * E, D, 0.0f, 0.8f);
            snprintf(n, sizeof n, "layers.%d.%d.layers.0.0.to_gates.weight", i, t), add(g, n, 2, D, 0.0f, 0.8f);
            snprintf(n, sizeof n, "layers.%d.%d.layers.0.0.to_gates.bias", i, t), add(g, n, 2, 0, 0.0f, 0.2f);
            snprintf(n, sizeof n, "layers.%d.%d.layers.0.0.to_out.0.weight", i, t), add(g, n, D, E, 0.0f, 0.8f);
            snprintf(n, sizeof n, "layers.%d.%d.layers.0.1.net.0.gamma", i, t), add(g, n, D, 0, 1.0f, 0.4f);
            snprintf(n, sizeof n, "layers.%d.%d.layers.0.1.net.1.weight", i, t), add(g, n, 4 * D, D, 0.0f, 0.8f);
            snprintf(n, sizeof n, "layers.%d.%d.layers.0.1.net.1.bias", i, t), add(g, n, 4 * D, 0, 0.0f, 0.2f);
            snprintf(n, sizeof n, "layers.%d.%d.layers.0.1.net.4.weight", i, t), add(g, n, D, 4 * D, 0.0f, 0.4f);
            snprintf(n, sizeof n, "layers.%d.%d.layers.0.1.net.4.bias", i, t), add(g, n, D, 0, 0.0f, 0.2f);
            if (mel)
                snprintf(n, sizeof n, "layers.%d.%d.norm.gamma", i, t), add(g, n, D, 0, 1.0f, 0.4f);
        }
    if (!mel)
        add(g, "final_norm.gamma", D, 0, 1.0f, 0.4f);
    int n_lin = 2;    /* BS mask_estimator_depth 2, Mel 1 (+1) */
    for (int s = 0; s < 2; s++)
        for (int k = 0; k < K; k++) {
            int w = 2 * C * (mel ? mel_hi[k] - mel_lo[k] : bs_w[k]);
            for (int j = 0; j < n_lin; j++) {
                int in = j ? 16 : D, out = j == n_lin - 1 ? 2 * w : 16;
                snprintf(n, sizeof n, "mask_estimators.%d.to_freqs.%d.0.%d.weight", s, k, 2 * j);
                add(g, n, out, in, 0.0f, 0.8f);
                snprintf(n, sizeof n, "mask_estimators.%d.to_freqs.%d.0.%d.bias", s, k, 2 * j);
                add(g, n, out, 0, 0.0f, 0.4f);
            }
        }
    if (mel) {
        add(g, "mel.freq_indices", 11, 0, 0.0f, 0.0f);
        add(g, "mel.num_freqs_per_band", 3, 0, 0.0f, 0.0f);
        add(g, "mel.num_bands_per_freq", 9, 0, 0.0f, 0.0f);
        float *fi = g->data[g->n - 3], *nf = g->data[g->n - 2], *nb = g->data[g->n - 1];
        for (int k = 0, j = 0; k < K; k++) {
            nf[k] = (float)(mel_hi[k] - mel_lo[k]);
            for (int f = mel_lo[k]; f < mel_hi[k]; f++, j++) {
                fi[j] = (float)f;
                nb[f] += 1.0f;
            }
        }
    }
}

/* metadata JSON with key `drop` left out and `extra` ("\"k\":\"v\"", may be NULL) added */
static void gen_meta(char *buf, size_t size, int mel, const char *drop, const char *extra)
{
    static const char *common[][2] = {
        {"stemsplit.sources", "vocals,other"}, {"stemsplit.samplerate", "8000"}, {"stemsplit.channels", "2"},
        {"stemsplit.segment", "60/8000"}, {"roformer.dim", "8"}, {"roformer.depth", "2"},
        {"roformer.time_transformer_depth", "1"}, {"roformer.freq_transformer_depth", "1"},
        {"roformer.dim_head", "4"}, {"roformer.heads", "2"}, {"roformer.num_stems", "2"},
        {"roformer.stereo", "true"}, {"roformer.stft_n_fft", "16"}, {"roformer.stft_hop_length", "5"},
        {"roformer.stft_win_length", "16"}, {"roformer.stft_normalized", "false"}, {"roformer.zero_dc", "true"},
        {"roformer.mlp_expansion_factor", "2"}, {"roformer.skip_connection", "true"}, {"roformer.ff_mult", "4"}};
    size_t n = (size_t)snprintf(buf, size, "{\"stemsplit.architecture\":\"%s\"",
                                mel ? "mel_band_roformer" : "bs_roformer");
    for (size_t i = 0; i < sizeof common / sizeof *common; i++)
        if (!drop || strcmp(drop, common[i][0]) != 0)
            n += (size_t)snprintf(buf + n, size - n, ",\"%s\":\"%s\"", common[i][0], common[i][1]);
    if (mel)
        n += (size_t)snprintf(buf + n, size - n, ",\"roformer.num_bands\":\"3\",\"roformer.sample_rate\":\"8000\","
                              "\"roformer.mask_estimator_depth\":\"1\"");
    else
        n += (size_t)snprintf(buf + n, size - n, ",\"roformer.freqs_per_bands\":\"3,2,4\","
                              "\"roformer.mask_estimator_depth\":\"2\"");
    if (extra)
        n += (size_t)snprintf(buf + n, size - n, ",%s", extra);
    snprintf(buf + n, size - n, "}");
}

/* two different items through batch 2 and each alone */
static void small_model(int mel)
{
    gen g;
    char path[1200], meta[4096];
    gen_model(&g, mel);
    gen_meta(meta, sizeof meta, mel, NULL, NULL);
    snprintf(path, sizeof path, "%s/small.safetensors", tmpdir);
    CHECK(gen_write(&g, path, meta, NULL) == 0, "cannot write %s", path);
    enum { L = 60 };
    float x[2 * 2 * L];
    for (int i = 0; i < 2 * 2 * L; i++)
        x[i] = 0.5f * sinf(0.37f * (float)i) + 0.1f * frand(&g);
    gen_free(&g);
    check_batch_items(path, x, L);
}

/* four passes with the same arguments: the same bits (check_graph_replay) */
static void graph_replay(int mel)
{
    gen g;
    char path[1200], meta[4096];
    gen_model(&g, mel);
    gen_meta(meta, sizeof meta, mel, NULL, NULL);
    snprintf(path, sizeof path, "%s/graph.safetensors", tmpdir);
    CHECK(gen_write(&g, path, meta, NULL) == 0, "cannot write %s", path);
    enum { B = 2, C = 2, L = 70 };
    float x[B * C * L];
    for (int i = 0; i < B * C * L; i++)
        x[i] = 0.5f * sinf(0.29f * (float)i) + 0.1f * frand(&g);
    gen_free(&g);
    check_graph_replay(path, x, B, C, L);
}

static void test_graph_replay_bs(void) { graph_replay(0); }
static void test_graph_replay_mel(void) { graph_replay(1); }

static void test_small_bs(void) { small_model(0); }
static void test_small_mel(void) { small_model(1); }

static void test_refusals(void)
{
    gen g;
    char path[1200], meta[4096], why[2048];
    snprintf(path, sizeof path, "%s/bad.safetensors", tmpdir);
    for (int mel = 0; mel < 2; mel++) {
        gen_model(&g, mel);
        gen_meta(meta, sizeof meta, mel, NULL, NULL);
        const char *missing = mel ? "layers.1.1.norm.gamma" : "mask_estimators.1.to_freqs.2.0.2.bias";
        int ok = gen_write(&g, path, meta, missing) == 0 && expect_refusal(path, missing, why, sizeof why);
        if (!ok)
            gen_free(&g);
        CHECK(ok, "missing tensor (%s): %s", mel ? "mel" : "bs", why);
        /* a stray tensor */
        add(&g, "layers.0.0.layers.0.0.extra", 2, 0, 0.0f, 0.0f);
        ok = gen_write(&g, path, meta, NULL) == 0 && expect_refusal(path, "layers.0.0.layers.0.0.extra", why, sizeof why);
        gen_free(&g);
        CHECK(ok, "stray tensor: %s", why);
    }
    /* unsupported or missing metadata */
    static const char *bad_meta[][3] = {
        {"\"roformer.stft_normalized\":\"true\"", "roformer.stft_normalized", "roformer.stft_normalized"},
        {"\"roformer.stft_win_length\":\"8\"", "roformer.stft_win_length", "roformer.stft_win_length"},
        {"\"roformer.linear_transformer_depth\":\"1\"", NULL, "roformer.linear_transformer_depth"},
        {NULL, "roformer.dim_head", "roformer.dim_head"},
        {"\"roformer.num_stems\":\"3\"", "roformer.num_stems", "roformer.num_stems"}};
    for (size_t i = 0; i < sizeof bad_meta / sizeof *bad_meta; i++) {
        gen_model(&g, 0);
        gen_meta(meta, sizeof meta, 0, bad_meta[i][1], bad_meta[i][0]);
        int ok = gen_write(&g, path, meta, NULL) == 0 && expect_refusal(path, bad_meta[i][2], why, sizeof why);
        gen_free(&g);
        CHECK(ok, "metadata %s: %s", bad_meta[i][2], why);
    }
    /* Mel: a band that is not a run of consecutive bins */
    gen_model(&g, 1);
    gen_meta(meta, sizeof meta, 1, NULL, NULL);
    for (int i = 0; i < g.n; i++)
        if (strcmp(g.names[i], "mel.freq_indices") == 0)
            g.data[i][1] = 2.0f, g.data[i][2] = 1.0f;     /* band 0: 0, 2, 1, 3 */
    int ok = gen_write(&g, path, meta, NULL) == 0 && expect_refusal(path, "mel.freq_indices", why, sizeof why);
    gen_free(&g);
    unlink(path);
    CHECK(ok, "non-consecutive mel band: %s", why);
}

int main(void)
{
    if (fixtures_init("SS_ROFORMER_FIXTURES", "roformer", "test_roformer"))
        return 1;
    RUN(test_parity);
#ifndef RF_NO_CLI
    RUN(test_cli_parity);
#endif
    RUN(test_small_bs);
    RUN(test_small_mel);
    RUN(test_graph_replay_bs);
    RUN(test_graph_replay_mel);
    RUN(test_refusals);
    fixtures_done();
    return test_summary();
}
