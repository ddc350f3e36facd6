#!/usr/bin/env python3
"""bench-dfn.py - the PyTorch reference side of the DeepFilterNet3 benchmarks: the
reference's own df/enhance.py enhance() timed on a mono 48 kHz mix, one JSON line out.

  bench-dfn.py MODEL_DIR [--seconds N | --mix WAV] [--threads T] [--device cpu|cuda]
               [--files K] [--warm 0|1] [--reps R] [--ref DIR]

MODEL_DIR is a model folder (config.ini, checkpoints/model_*.ckpt.best): the
release, or `make-dfn-fixtures.py --full OUTDIR` (OUTDIR/full: the released
configuration with random weights; the same work per second of audio).  The
model is loaded by the reference's init_df() before the timed region.  Timed:
enhance() on the mix (features, the model, synthesis, delay compensation), K
times in a row (--files: K files one after another, as df/enhance.py's main
loop runs a folder; default 1), ending with the enhanced audio in host memory.
--warm 1 first runs enhance() on 2 s of noise outside the timed region.
--reps R repeats the timed region R times and reports the fastest (default 1).

Side by side with stemsplit on the same machine (one thread each, alternated):

  python3 scripts/make-dfn-fixtures.py --full build/dfn        # build/dfn/full
  python3 scripts/convert-deepfilternet.py -o build/dfn-full.safetensors build/dfn/full
  sox -n -r 48000 -c 1 -b 16 build/noise20.wav synth 20 pinknoise vol 0.3
  /usr/bin/time -f %e ./stemsplit -q -m build/dfn-full.safetensors -d cpu -j 1 -o build/sp build/noise20.wav
  python3 scripts/bench-dfn.py build/dfn/full --mix build/noise20.wav --threads 1 --reps 3

The reference's compiled feature extension (libdf, Rust) is not available here:
the features and synthesis run in dfnref.py's numpy port of it, so the
reference figures include numpy's STFT and per-frame normalisation loops where
the real package runs Rust.  "model_s" (the network's forward alone, timed by
hooks) is given separately so the two parts can be told apart.

Needs torch and numpy, and DeepFilterNet's python package under --ref (default
.ref/dfn/DeepFilterNet; see make-dfn-fixtures.py).
"""
import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import dfnref  # noqa: E402


def read_wav_mono(path):
    import numpy as np
    import struct
    with open(path, "rb") as f:
        data = f.read()
    pos, ch, fmt, bits, sr, payload = 12, None, None, None, None, None
    while pos + 8 <= len(data):
        cid, size = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
        if cid == b"fmt ":
            fmt, ch, sr = struct.unpack("<HHI", data[pos + 8:pos + 16])
            bits = struct.unpack("<H", data[pos + 22:pos + 24])[0]
        elif cid == b"data":
            payload = data[pos + 8:pos + 8 + size]
        pos += 8 + size + (size & 1)
    if payload is None or ch is None:
        sys.exit("%s: not a WAV file" % path)
    if fmt in (3, 0xFFFE) and bits == 32:
        x = np.frombuffer(payload, dtype="<f4")
    elif bits == 16:
        x = np.frombuffer(payload, dtype="<i2").astype(np.float32) / 32768.0
    else:
        sys.exit("%s: only 16-bit PCM and 32-bit float WAV" % path)
    x = x.reshape(-1, ch).T
    return np.ascontiguousarray(x[:1]), sr


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model_dir")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--mix")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--files", type=int, default=1)
    ap.add_argument("--warm", type=int, default=1)
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--ref", default=os.path.join(ROOT, ".ref", "dfn", "DeepFilterNet"))
    a = ap.parse_args()
    import numpy as np
    import torch
    if a.threads > 0:
        torch.set_num_threads(a.threads)
        torch.set_num_interop_threads(a.threads)
    os.environ["DEVICE"] = a.device        # config.py: an environment variable wins over config.ini
    enh, _ = dfnref.load(os.path.abspath(a.ref))
    model, df_state, _, epoch = enh.init_df(os.path.abspath(a.model_dir), log_level="none",
                                            log_file=None, epoch="best")
    if dfnref.LOGGER.warnings:
        sys.exit("loading %s: %s" % (a.model_dir, "; ".join(dfnref.LOGGER.warnings)))
    sr = df_state.sr()
    if a.mix:
        x, wsr = read_wav_mono(a.mix)
        if wsr != sr:
            sys.exit("%s: %d Hz; the model runs at %d Hz" % (a.mix, wsr, sr))
    else:
        import importlib.util
        spec = importlib.util.spec_from_file_location("mdf", os.path.join(HERE, "make-dfn-fixtures.py"))
        mdf = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mdf)
        x = mdf.make_mix(1, int(a.seconds * sr), sr)
    cuda = a.device.startswith("cuda")

    def sync():
        if cuda:
            torch.cuda.synchronize()

    model_t = [0.0]
    t_in = [0.0]

    def pre(mod, args):
        sync()
        t_in[0] = time.perf_counter()

    def post(mod, args, out):
        sync()
        model_t[0] += time.perf_counter() - t_in[0]

    model.register_forward_pre_hook(pre)
    model.register_forward_hook(post)
    audio = torch.from_numpy(x)
    if a.warm:
        enh.enhance(model, df_state, torch.from_numpy(
            (np.random.RandomState(0).randn(1, 2 * sr) * 0.1).astype(np.float32)))
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    dt = model_s = None
    for _ in range(max(a.reps, 1)):          # the fastest repetition
        model_t[0] = 0.0
        sync()
        t0 = time.perf_counter()
        for _ in range(a.files):
            out = enh.enhance(model, df_state, audio)
        t = time.perf_counter() - t0
        if dt is None or t < dt:
            dt, model_s = t, model_t[0]
    secs = a.files * x.shape[1] / sr
    p = enh.ModelParams()
    rec = {"impl": "deepfilternet-torch", "model": os.path.basename(os.path.abspath(a.model_dir)),
           "epoch": epoch, "fft": p.fft_size, "hop": p.hop_size, "conv_ch": p.conv_ch,
           "device": a.device, "threads": torch.get_num_threads(), "files": a.files,
           "warm": bool(a.warm), "audio_s": round(secs, 3), "seconds": round(dt, 3),
           "reps": max(a.reps, 1), "model_s": round(model_s, 3), "x_realtime": round(secs / dt, 2),
           "rtf": round(dt / secs, 4), "out_rms": float(out.pow(2).mean().sqrt()),
           "features": "numpy port of libdf", "torch": torch.__version__}
    if cuda:
        rec["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    print(json.dumps(rec))


if __name__ == "__main__":
    main()
