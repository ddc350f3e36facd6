#!/usr/bin/env python3
"""make-eval-fixtures.py - reference scores for `stemsplit eval` (tests/fixtures/eval/).

    make-eval-fixtures.py METRICS_PY OUT.json   score every case with museval's metrics.py
                                                (sigsep-mus-eval, loaded by path; needs numpy
                                                and scipy) and demucs's new_sdr, write OUT.json
    make-eval-fixtures.py wav CASE DIR          write the case's reference and estimate stems as
                                                32-bit float WAV: DIR/ref/NAME.wav, DIR/est/NAME.wav
                                                (python3 standard library only)

The audio of each case is not stored: it comes from an integer generator that
tests/test_eval.c implements sample for sample (xorshift32 noise, integer FIR
colouring and gains, divided by a power of two, so every sample is an exact
float32 in both languages).  Keep the two in step.

museval is run as museval.eval_mus_track runs it: estimates padded or cut to
the references' length (pad_or_truncate), bss_eval with 1 s windows and hops
(44100 samples), compute_permutation=False, filters_len=512,
framewise_filters=False, bsseval_sources_version=False; infinite frame values
stored as NaN (TrackStore._q); the track score is np.nanmedian over frames.
nSDR is demucs evaluate.py new_sdr: 10 log10((sum r^2 + 1e-7) / (sum (r-e)^2 + 1e-7)).
"""
import array
import importlib.util
import json
import os
import struct
import sys

RATE = 44100
STEM_NAMES = ["drums", "bass", "other", "vocals"]
# name, sources, channels, length, estimate lengths, seed,
# reference silent (source, start, end) or None, estimate silent (source, start, end) or None
CASES = [
    ("two_stereo", 2, 2, 145530, [125530, 145530], 1, None, None),
    ("four_silent", 4, 2, 187425, [192425, 187425, 187425, 190000], 2, (2, 44100, 88300), (0, 132000, 176500)),
    ("mono_short", 3, 1, 35280, [35280, 35000, 36000], 3, None, None),
]
FIR = [[2, 1, 0], [1, -1, 0], [1, 2, 1], [3, 0, -1]]


def noise(seed, n):
    s = seed & 0xFFFFFFFF
    out = [0] * n
    for i in range(n):
        s ^= (s << 13) & 0xFFFFFFFF
        s ^= s >> 17
        s ^= (s << 5) & 0xFFFFFFFF
        out[i] = (s >> 16) - 32768
    return out


def case_ints(case):
    """reference and estimate samples as integers: ref / 2**21, est / 2**23"""
    name, nsrc, nchan, length, est_len, seed, silent, est_silent = case
    n = max([length] + est_len)
    ref = []
    for j in range(nsrc):
        chans = []
        for c in range(nchan):
            w = noise(seed * 1000 + j * 10 + c + 1, n)
            b = FIR[j % 4]
            r = [b[0] * w[t] + (b[1] * w[t - 1] if t >= 1 else 0) + (b[2] * w[t - 2] if t >= 2 else 0)
                 for t in range(n)]
            if c > 0:
                r = [r[t] + chans[0][t] for t in range(n)]
            chans.append(r)
        for c in range(nchan):
            chans[c] = [chans[c][t] * (1 + ((t // 11025 + j) % 4)) for t in range(n)]
            if silent and silent[0] == j:
                for t in range(silent[1], silent[2]):
                    chans[c][t] = 0
        ref.append(chans)
    est = []
    for j in range(nsrc):
        chans = []
        for c in range(nchan):
            r = ref[j][c]
            o = ref[(j + 1) % nsrc][c]
            z = noise(seed * 1000 + 500 + j * 10 + c + 1, n)
            e = [4 * r[t] + (r[t - 3] if t >= 3 else 0) + o[t] + 2 * z[t] for t in range(est_len[j])]
            if est_silent and est_silent[0] == j:
                for t in range(est_silent[1], min(est_silent[2], est_len[j])):
                    e[t] = 0
            chans.append(e)
        est.append(chans)
    ref = [[ch[:length] for ch in src] for src in ref]
    return ref, est


def write_wav(path, chans, scale):
    n = len(chans[0])
    data = array.array("f", [0.0] * (n * len(chans)))
    for c, ch in enumerate(chans):
        data[c::len(chans)] = array.array("f", [v / scale for v in ch])
    if sys.byteorder != "little":
        data.byteswap()
    raw = data.tobytes()
    nch = len(chans)
    fmt = struct.pack("<HHIIHH", 3, nch, RATE, RATE * nch * 4, nch * 4, 32)
    with open(path, "wb") as f:
        f.write(b"RIFF" + struct.pack("<I", 4 + 8 + len(fmt) + 8 + len(raw)) + b"WAVE")
        f.write(b"fmt " + struct.pack("<I", len(fmt)) + fmt)
        f.write(b"data" + struct.pack("<I", len(raw)) + raw)


def cmd_wav(name, d):
    case = [c for c in CASES if c[0] == name][0]
    ref, est = case_ints(case)
    for sub in ("ref", "est"):
        os.makedirs(os.path.join(d, sub), exist_ok=True)
    for j in range(case[1]):
        write_wav(os.path.join(d, "ref", STEM_NAMES[j] + ".wav"), ref[j], 2.0 ** 21)
        write_wav(os.path.join(d, "est", STEM_NAMES[j] + ".wav"), est[j], 2.0 ** 23)


def cmd_scores(metrics_py, out):
    import numpy as np

    spec = importlib.util.spec_from_file_location("museval_metrics", metrics_py)
    metrics = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(metrics)
    result = {"generator": "scripts/make-eval-fixtures.py", "window": RATE, "hop": RATE, "cases": []}
    for case in CASES:
        name, nsrc, nchan, length, est_len = case[:5]
        ref_i, est_i = case_ints(case)
        # as float32 files hold them, then float64 as museval and demucs compute
        ref = np.array([np.array(src, np.float64).T / 2.0 ** 21 for src in ref_i])
        ests = []
        for j in range(nsrc):
            e = np.array(est_i[j], np.float64).T / 2.0 ** 23
            # museval.pad_or_truncate
            if e.shape[0] >= length:
                e = e[:length]
            else:
                e = np.pad(e, [(0, length - e.shape[0]), (0, 0)], mode="constant")
            ests.append(e)
        est = np.array(ests)
        assert np.all(ref.astype(np.float32) == ref) and np.all(est.astype(np.float32) == est)
        sdr, isr, sir, sar, _ = metrics.bss_eval(ref, est, window=RATE, hop=RATE, compute_permutation=False,
                                                 filters_len=512, framewise_filters=False,
                                                 bsseval_sources_version=False)
        num = np.sum(np.square(ref), axis=(1, 2)) + 1e-7
        den = np.sum(np.square(ref - est), axis=(1, 2)) + 1e-7
        nsdr = 10 * np.log10(num / den)
        entry = {"name": name, "sources": nsrc, "channels": nchan, "length": length, "est_length": est_len,
                 "stems": STEM_NAMES[:nsrc], "frames": {}, "median": {}, "nSDR": [float(v) for v in nsdr]}
        for key, m in (("SDR", sdr), ("ISR", isr), ("SIR", sir), ("SAR", sar)):
            m = np.where(np.isinf(m), np.nan, m)
            entry["frames"][key] = [[None if np.isnan(v) else float(v) for v in row] for row in m]
            med = [np.nanmedian(row) if not np.all(np.isnan(row)) else np.nan for row in m]
            entry["median"][key] = [None if np.isnan(v) else float(v) for v in med]
        result["cases"].append(entry)
        sys.stderr.write("%s: SDR %s\n" % (name, entry["median"]["SDR"]))
    with open(out, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "wav":
        cmd_wav(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 3:
        cmd_scores(sys.argv[1], sys.argv[2])
    else:
        sys.stderr.write(__doc__)
        sys.exit(64)
