#!/usr/bin/env python3
"""bench-eval.py - time museval's BSSEval v4 against `stemsplit eval` on one track.

    scripts/bench-eval.py make DIR [SECONDS]     write DIR/ref/bench/{drums,bass,other,vocals}.wav
                                                 and DIR/est/bench/... (float WAV, 44.1 kHz stereo):
                                                 coloured noise, estimates = reference + leakage
    scripts/bench-eval.py museval METRICS_PY DIR  score them with museval (sigsep-mus-eval) metrics.py,
                                                 loaded by path, as eval_mus_track does (1 s frames);
                                                 prints the seconds and the median scores

Needs numpy and scipy.  Run museval on one core: OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1.
The other side: /usr/bin/time stemsplit eval -q DIR/ref/bench DIR/est/bench (single-threaded).
Measured (2-core Xeon, shared): museval 150 s CPU / 268 s wall, stemsplit 4.3 s CPU / 8.4 s wall,
the same medians to the third decimal.
"""
import importlib.util
import os
import sys
import time

import numpy as np
from scipy.io import wavfile
from scipy.signal import lfilter

STEMS = ["drums", "bass", "other", "vocals"]
RATE = 44100


def make(d, seconds):
    rng = np.random.default_rng(28)
    n = int(seconds * RATE)
    refs = []
    for k, _ in enumerate(STEMS):
        x = rng.standard_normal((n, 2))
        a = 0.5 + 0.12 * k
        x = lfilter([1.0], [1.0, -a], x, axis=0)
        env = 0.5 + 0.5 * np.sin(2 * np.pi * (0.1 + 0.05 * k) * np.arange(n) / RATE)[:, None]
        refs.append((0.05 * x * env).astype(np.float32))
    for sub, sigs in (("ref", refs), ("est", None)):
        os.makedirs(os.path.join(d, sub, "bench"), exist_ok=True)
    for k, s in enumerate(STEMS):
        wavfile.write(os.path.join(d, "ref", "bench", s + ".wav"), RATE, refs[k])
        leak = 0.1 * refs[(k + 1) % len(STEMS)]
        delayed = np.vstack([np.zeros((3, 2), np.float32), refs[k][:-3]])
        est = refs[k] + leak + 0.2 * delayed + 0.01 * rng.standard_normal((n, 2)).astype(np.float32)
        wavfile.write(os.path.join(d, "est", "bench", s + ".wav"), RATE, est.astype(np.float32))


def museval(metrics_py, d):
    spec = importlib.util.spec_from_file_location("museval_metrics", metrics_py)
    metrics = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(metrics)
    refs = np.array([wavfile.read(os.path.join(d, "ref", "bench", s + ".wav"))[1] for s in STEMS], np.float64)
    ests = np.array([wavfile.read(os.path.join(d, "est", "bench", s + ".wav"))[1] for s in STEMS], np.float64)
    t0 = time.perf_counter()
    sdr, isr, sir, sar, _ = metrics.bss_eval(refs, ests, window=RATE, hop=RATE, compute_permutation=False,
                                             filters_len=512, framewise_filters=False,
                                             bsseval_sources_version=False)
    t1 = time.perf_counter()
    print("museval bss_eval: %.1f s" % (t1 - t0))
    for k, s in enumerate(STEMS):
        med = [np.nanmedian(np.where(np.isinf(m[k]), np.nan, m[k])) for m in (sdr, isr, sir, sar)]
        print("%-8s SDR %8.3f ISR %8.3f SIR %8.3f SAR %8.3f" % (s, *med))


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "make":
        make(sys.argv[2], float(sys.argv[3]) if len(sys.argv) > 3 else 240.0)
    elif len(sys.argv) == 4 and sys.argv[1] == "museval":
        museval(sys.argv[2], sys.argv[3])
    else:
        sys.stderr.write(__doc__)
        sys.exit(64)
