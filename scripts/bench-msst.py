#!/usr/bin/env python3
"""bench-msst.py - the PyTorch reference side of the RoFormer and MDX23C benchmarks: MSST's
own inference (utils.model_utils.demix, as its inference.py runs it) timed on
one mixture, one JSON line out.

  bench-msst.py CONFIG.yaml CHECKPOINT MIX.wav [--device cpu|cuda] [--threads N]
                [--amp 0|1] [--flash 0|1] [--batch N] [--warm 0|1]

The model is built from the config, loaded from the checkpoint and moved to the
device before the timed region; the WAV is decoded before it too.  Timed: the
normalisation where the config asks for it, demix (chunking, the model, the
overlap-add) and the de-normalisation, ending with the stems in host memory, as
inference.py has them before it writes files.  --amp 1 is MSST's default
(training.use_amp: autocast float16 on CUDA); --amp 0 is fp32 (cuBLAS without
TF32, PyTorch's default for matmuls).  --flash 1 (default) sets flash_attn (torch's
fused scaled_dot_product_attention, as the released configs do); 0 turns it off.  --batch sets
inference.batch_size (default: the config's).  --warm 1 first runs demix on 10 s
of noise outside the timed region (kernels loaded, allocator pools made).
An MDX23C config (model.num_subbands, ...) builds MSST's TFC_TDF_net instead (--flash
does not apply).

Needs torch, numpy, PyYAML and the MSST files under .ref (see
scripts/make-roformer-fixtures.py, whose loader this uses).
"""
import argparse
import importlib.util
import json
import os
import struct
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("make_roformer_fixtures",
                                              os.path.join(HERE, "make-roformer-fixtures.py"))
mrf = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mrf)


def read_wav_f32(path):
    import numpy as np
    with open(path, "rb") as f:
        data = f.read()
    pos, ch, fmt, bits, payload = 12, None, None, None, None
    while pos + 8 <= len(data):
        cid, size = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
        if cid == b"fmt ":
            fmt, ch = struct.unpack("<HH", data[pos + 8:pos + 12])
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
    return np.ascontiguousarray(x.reshape(-1, ch).T)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config")
    ap.add_argument("checkpoint")
    ap.add_argument("mix")
    ap.add_argument("--ref", default=os.path.join(os.path.dirname(HERE), ".ref"))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--amp", type=int, default=0)
    ap.add_argument("--flash", type=int, default=1)
    ap.add_argument("--batch", type=int, default=0)
    ap.add_argument("--warm", type=int, default=0)
    a = ap.parse_args()
    import numpy as np
    import torch
    import yaml
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    mods, mu, au, _ = mrf.load_reference(os.path.abspath(a.ref))
    from ml_collections import ConfigDict   # the stand-in the loader put on the path
    y = yaml.unsafe_load(open(a.config))
    mdx = any(k in y["model"] for k in ("num_subbands", "num_scales", "num_blocks_per_scale"))
    if not mdx:
        y["model"]["flash_attn"] = bool(a.flash)
    y.setdefault("training", {})["use_amp"] = bool(a.amp)
    if a.batch > 0:
        y["inference"]["batch_size"] = a.batch
    config = ConfigDict(y)
    if mdx:
        arch = "mdx23c"
        spec = importlib.util.spec_from_file_location(
            "mdx23c_tfc_tdf_v3", os.path.join(os.path.abspath(a.ref), "msst", "models", "mdx23c_tfc_tdf_v3.py"))
        mdx_mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mdx_mod)
        model = mdx_mod.TFC_TDF_net(config)
    else:
        arch = "mel_band_roformer" if "num_bands" in y["model"] else "bs_roformer"
        model = mrf.build(mods, arch, dict(config.model))
    sd = torch.load(a.checkpoint, map_location="cpu")
    for key in ("state", "state_dict", "model_state_dict"):
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
    model.load_state_dict({k: (v.float() if v.is_floating_point() else v) for k, v in sd.items()})
    model.eval().to(a.device)
    mix = read_wav_f32(a.mix)
    sr = int(y["audio"].get("sample_rate", 44100))
    cuda = a.device.startswith("cuda")

    def sync():
        if cuda:
            torch.cuda.synchronize()

    def separate(x):
        norm = config.inference.get("normalize") is True
        if norm:
            x, params = au.normalize_audio(x)
        res = mu.demix(config, model, x, a.device, model_type=arch, pbar=False)
        out = {k: (au.denormalize_audio(v, params) if norm else v) for k, v in res.items()}
        sync()
        return out

    if a.warm:
        noise = (np.random.RandomState(0).randn(mix.shape[0], 10 * sr) * 0.1).astype(np.float32)
        separate(noise)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    sync()
    t0 = time.perf_counter()
    out = separate(mix)
    dt = time.perf_counter() - t0
    secs = mix.shape[1] / sr
    rec = {"impl": "msst", "arch": arch, "device": a.device, "threads": torch.get_num_threads(),
           "amp": bool(a.amp), "flash": bool(y["model"].get("flash_attn", False)),
           "batch": int(config.inference.batch_size), "warm": bool(a.warm),
           "audio_s": round(secs, 3), "seconds": round(dt, 3), "x_realtime": round(secs / dt, 2),
           "stems": sorted(out), "torch": torch.__version__}
    if cuda:
        rec["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    print(json.dumps(rec))


if __name__ == "__main__":
    main()
