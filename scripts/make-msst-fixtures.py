#!/usr/bin/python3
"""make-msst-fixtures.py - reference outputs of MSST's demix() for tests/t_msst_chunking.sh.

Runs the REAL demix() of ZFTurbo/Music-Source-Separation-Training
(utils/model_utils.py, imported by path; its module-level imports that are not
needed here, ml_collections and tqdm, are stubbed) on a chunk-dependent torch
module equal to the `identity` test architecture with identity.chunk_dc=true:

    y[b, s, c, t] = gain[s] * (x[b, c, t] - mean over t of x[b, c, :]) + offset

(offset: identity.offset, 0 but in the normalisation case, where it keeps the
std from cancelling out)

so that every chunk's placement, padding and window shows in the result.  For
each case it writes to tests/fixtures/msst/:

    NAME.safetensors      an identity model (stemsplit.chunking=msst,
                          msst.chunk_size, msst.num_overlap, ...)
    MIX.wav               the mixture (32-bit float WAV, 1000 Hz)
    NAME.STEM.wav         the expected stems (32-bit float WAV)

The normalisation case follows MSST's inference: normalize_audio (numpy mean
and std, ddof 0, of the mono mix), demix, denormalize_audio, and the residual
stem `instrumental` = mixture - vocals.

Usage: scripts/make-msst-fixtures.py MSST_CHECKOUT [OUT_DIR]
(needs numpy and torch; Debian: python3-numpy python3-torch)
"""
import importlib.util
import json
import os
import struct
import sys
import types

import numpy as np
import torch

RATE = 1000


class ConfigDict(dict):
    """Just enough of ml_collections.ConfigDict for demix(): attributes and `in`."""

    def __getattr__(self, k):
        try:
            return self[k]
        except KeyError as e:
            raise AttributeError(k) from e


def load_model_utils(msst_root):
    ml = types.ModuleType("ml_collections")
    ml.ConfigDict = ConfigDict
    sys.modules.setdefault("ml_collections", ml)
    try:
        import tqdm.auto  # noqa: F401
    except ImportError:
        tq = types.ModuleType("tqdm")
        tqa = types.ModuleType("tqdm.auto")
        tqa.tqdm = lambda *a, **k: None
        tq.auto = tqa
        sys.modules["tqdm"] = tq
        sys.modules["tqdm.auto"] = tqa
    path = os.path.join(msst_root, "utils", "model_utils.py")
    spec = importlib.util.spec_from_file_location("msst_model_utils", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class ChunkDC(torch.nn.Module):
    def __init__(self, gains, offset):
        super().__init__()
        self.gain = torch.tensor(gains, dtype=torch.float32)
        self.offset = offset

    def forward(self, x):                       # [B, C, T] -> [B, S, C, T]
        d = x - x.mean(dim=-1, keepdim=True)
        return self.gain[None, :, None, None] * d[:, None] + self.offset


def write_wav(path, x):
    """x [C, T] float32 -> WAVE_FORMAT_IEEE_FLOAT."""
    x = np.asarray(x, dtype="<f4")
    ch, n = x.shape
    data = x.T.tobytes()
    fmt = struct.pack("<HHIIHH", 3, ch, RATE, RATE * ch * 4, ch * 4, 32)
    with open(path, "wb") as f:
        f.write(b"RIFF" + struct.pack("<I", 4 + 8 + len(fmt) + 8 + 4 + 8 + len(data)) + b"WAVE")
        f.write(b"fmt " + struct.pack("<I", len(fmt)) + fmt)
        f.write(b"fact" + struct.pack("<II", 4, n))
        f.write(b"data" + struct.pack("<I", len(data)) + data)


def write_model(path, sources, gains, channels, chunk, num_overlap, extra):
    meta = {"stemsplit.architecture": "identity", "stemsplit.sources": ",".join(sources),
            "stemsplit.samplerate": str(RATE), "stemsplit.channels": str(channels),
            "stemsplit.segment": "%d/%d" % (chunk, RATE), "stemsplit.chunking": "msst",
            "msst.chunk_size": str(chunk), "msst.num_overlap": str(num_overlap),
            "identity.chunk_dc": "true", "identity.norm": "none"}
    meta.update(extra)
    data = np.asarray(gains, dtype="<f4").tobytes()
    hdr = {"__metadata__": meta, "gain": {"dtype": "F32", "shape": [len(gains)], "data_offsets": [0, len(data)]}}
    h = json.dumps(hdr, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + data)


def mixture(seed, channels, n):
    """A test signal with a DC offset and a slow drift, so that chunk means differ."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / RATE
    x = 0.3 * rng.standard_normal((channels, n)) + 0.2 * np.sin(2 * np.pi * 0.7 * t + np.arange(channels)[:, None])
    return (x + 0.05 + 0.1 * t / t[-1]).astype(np.float32)


def demix(mu, mix, gains, chunk, num_overlap, offset=0.0):
    cfg = ConfigDict(
        audio=ConfigDict(chunk_size=chunk),
        training=ConfigDict(instruments=["s%d" % i for i in range(len(gains))], target_instrument=None,
                            use_amp=False),
        inference=ConfigDict(num_overlap=num_overlap, batch_size=1))
    out = mu.demix(cfg, ChunkDC(gains, offset), mix, torch.device("cpu"), "mel_band_roformer")
    return [out["s%d" % i].astype(np.float32) for i in range(len(gains))]


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    mu = load_model_utils(sys.argv[1])
    out = sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures",
                                                             "msst")
    os.makedirs(out, exist_ok=True)
    # the mixtures: long ones (many chunks, reflect-padded ends), a short one (no padding)
    mixes = {"long_stereo": mixture(1, 2, 3001), "long_mono": mixture(2, 1, 2345),
             "short_stereo": mixture(3, 2, 150), "flat_stereo": mixture(4, 2, 530), "norm_stereo": mixture(5, 2, 1777)}
    for name, x in mixes.items():
        write_wav(os.path.join(out, name + ".wav"), x)
    two = (["vocals", "other"], [1.0, 0.5])
    # name: mixture, (sources, gains), chunk, num_overlap.  Last chunks, padded track P:
    #   long_stereo C 200 o4: P 3301, last chunks of 151, 101 (reflect-padded), 51, 1 (zeros)
    #   long_mono   C 200 o2: P 2545, last chunks of 145 (reflect), 45 (zeros)
    #   long_mono   C 300 o2 (--segment 0.3): P 2645, last chunks of 245 (reflect), 95 (zeros)
    #   long_mono   C 200 o4 (--overlap 0.75 on the o2 model): P 2645, 145, 95 (reflect), 45 (zeros)
    #   short_stereo C 200 o2: 150 <= 2 border: no padding; chunks of 150 (reflect), 50 (zeros)
    #   flat_stereo C 200 o1: border 0, no padding, windows meet at 0: frames no window reaches are 0
    cases = [("long_stereo_o4", "long_stereo", two, 200, 4),
             ("long_mono_o2", "long_mono", (["vocals"], [0.75]), 200, 2),
             ("long_mono_c300", "long_mono", (["vocals"], [0.75]), 300, 2),
             ("long_mono_o4", "long_mono", (["vocals"], [0.75]), 200, 4),
             ("short_stereo_o2", "short_stereo", two, 200, 2),
             ("flat_stereo_o1", "flat_stereo", two, 200, 1)]
    for name, mixname, (sources, gains), chunk, no in cases:
        x = mixes[mixname]
        if name in ("long_mono_c300", "long_mono_o4"):
            model = None                     # run with long_mono_o2.safetensors and --segment / --overlap
        else:
            model = os.path.join(out, name + ".safetensors")
            write_model(model, sources, gains, x.shape[0], chunk, no, {})
        for s, y in zip(sources, demix(mu, x, gains, chunk, no)):
            write_wav(os.path.join(out, "%s.%s.wav" % (name, s)), y)
    # MSST's inference with normalize: true and --extract_instrumental
    x = mixes["norm_stereo"]
    mono = x.mean(0)
    mean, std = mono.mean(), mono.std()
    xn = (x - mean) / std
    (vocals,) = demix(mu, xn, [0.8], 200, 4, offset=0.5)
    vocals = vocals * std + mean
    write_model(os.path.join(out, "norm_residual.safetensors"), ["vocals"], [0.8], 2, 200, 4,
                {"msst.normalize": "true", "stemsplit.residual": "instrumental", "identity.norm": "mix",
                 "identity.offset": "0.5"})
    write_wav(os.path.join(out, "norm_residual.vocals.wav"), vocals)
    write_wav(os.path.join(out, "norm_residual.instrumental.wav"), x - vocals)
    with open(os.path.join(out, "norm_residual.txt"), "w") as f:
        f.write("mean %.9g std %.9g (numpy, ddof 0, of the mono mix of norm_stereo.wav)\n" % (mean, std))


if __name__ == "__main__":
    main()
