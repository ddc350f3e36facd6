#!/usr/bin/env python3
"""make-reference.py - build the HTDemucs reference fixtures that stemsplit's C
code is tested against, with the PyTorch reference (demucs v4).

Needs torch and the demucs package source (not installed: the `demucs/` folder
of facebookresearch/demucs) plus stand-ins for demucs's training-only imports
(openunmix, julius, dora, omegaconf).  By default both come from the ignored
folder `.ref/` of the repository: `.ref/demucs` and `.ref/stubs`.

  make-reference.py [--out tests/fixtures/htdemucs] [--case NAME ...]
  make-reference.py --full OUT_DIR        full-size htdemucs, 30 s mixture

Every case folder gets (see tests/fixtures/htdemucs/README.md):
  model.th | model0.th model1.th   saved exactly as demucs does (F16 state)
  mix.wav                          the mixture, 32-bit float WAV
  ref.safetensors                  F32 `stems` [S, C, L]: the demucs CLI result
                                   (+ `forward_in`, `forward_out` for some cases)
  convert.args                     converter arguments after the inputs
  state.txt                        "name dtype shape" of every tensor the
                                   converted file must hold

The computation is the demucs CLI's, in fp32 on the CPU:
  ref = wav.mean(0); wav = (wav - ref.mean()) / ref.std()
  out = apply_model(model, wav[None], shifts=0, split=True, overlap=0.25)[0]
  out = out * ref.std() + ref.mean()
with the model loaded back from the saved .th file, so its weights are the
F16-rounded ones.  A mono mixture is duplicated to stereo first, as demucs's
convert_audio does.
"""
import argparse
import json
import math
import os
import struct
import sys
import time
from fractions import Fraction

SR = 44100
SOURCES4 = ["drums", "bass", "other", "vocals"]
SOURCES6 = ["drums", "bass", "other", "vocals", "guitar", "piano"]

# Small models: channels 8/16 instead of 48, everything else as released
# (nfft 4096, depth 4, kernel 8, stride 4, ...) unless the case says so.
CASES = [
    {
        "name": "t1_base",
        "covers": "4 sources, t_layers 1, no bottom channels, segment 1/2 s (Fraction), "
                  "length not a multiple of the hop (1024); forward_in/forward_out: one "
                  "direct model(x) call on a training-length segment",
        "models": [dict(kwargs=dict(sources=SOURCES4, channels=8, t_layers=1,
                                    segment=Fraction(1, 2)))],
        "length": 36011, "channels": 2, "forward": True,
    },
    {
        "name": "s6_t2",
        "covers": "6 sources, t_layers 2, segment 5/8 s (27562.5 samples: truncated to "
                  "27562), length not a multiple of the hop",
        "models": [dict(kwargs=dict(sources=SOURCES6, channels=8, t_layers=2,
                                    segment=Fraction(5, 8)))],
        "length": 36001, "channels": 2, "forward": False,
    },
    {
        "name": "bottom_dconv3",
        "covers": "bottom_channels 48 (1x1 convs around the transformer), t_layers 2, "
                  "dconv_mode 3 (DConv in decoder layers too), segment a float (0.6), "
                  "forward_in/forward_out as well",
        "models": [dict(kwargs=dict(sources=SOURCES4, channels=8, t_layers=2,
                                    bottom_channels=48, dconv_mode=3, segment=0.6))],
        "length": 36000, "channels": 2, "forward": True,
    },
    {
        "name": "mono_c12",
        "covers": "mono mixture (duplicated to stereo before normalising; stems are "
                  "stereo), channels 12 (transformer dim 96, head dim 12, DConv hidden 1), t_layers 1",
        "models": [dict(kwargs=dict(sources=SOURCES4, channels=12, t_layers=1,
                                    segment=Fraction(1, 2)))],
        "length": 30000, "channels": 1, "forward": False,
    },
    {
        "name": "short",
        "covers": "mixture shorter than one segment (15013 < 22050 samples): a single "
                  "chunk, zero-padded on both sides by apply_model and trimmed back",
        "models": [dict(kwargs=dict(sources=SOURCES4, channels=8, t_layers=1,
                                    segment=Fraction(1, 2)))],
        "length": 15013, "channels": 2, "forward": False,
    },
    {
        "name": "bag2",
        "covers": "bag of two models with a weight matrix (different architectures: "
                  "t_layers 1 / t_layers 2 + bottom_channels 32; model1 gets `sources` "
                  "as a positional argument)",
        "models": [
            dict(kwargs=dict(sources=SOURCES4, channels=8, t_layers=1,
                             segment=Fraction(1, 2))),
            dict(args=[SOURCES4], kwargs=dict(channels=8, t_layers=2, bottom_channels=32,
                                              segment=Fraction(1, 2))),
        ],
        "weights": [[1.0, 0.0, 0.25, 1.0], [0.0, 1.0, 0.75, 0.5]],
        "length": 36000, "channels": 2, "forward": False,
    },
]

# The released `htdemucs` (955717e8) checkpoint's kwargs: demucs's training
# config for HTDemucs plus grids/mmi.py (dconv_mode 3, bottom_channels 512,
# t_dropout 0.02 -- inactive at inference; t_sparse_attn_window 400 -- unused
# without sparse attention; multi_freqs [] -- same as None) and segment 39/5 s
# (7.8 s), as other ports of the released model also record them.
FULL_KWARGS = dict(sources=SOURCES4, audio_channels=2, samplerate=SR, segment=Fraction(39, 5),
                   channels=48, channels_time=None, growth=2, nfft=4096, wiener_iters=0,
                   end_iters=0, wiener_residual=False, cac=True, depth=4, rewrite=True,
                   multi_freqs=[], multi_freqs_depth=3, freq_emb=0.2, emb_scale=10,
                   emb_smooth=True, kernel_size=8, stride=4, time_stride=2, context=1,
                   context_enc=0, norm_starts=4, norm_groups=4, dconv_mode=3, dconv_depth=2,
                   dconv_comp=8, dconv_init=1e-3, bottom_channels=512, t_layers=5,
                   t_hidden_scale=4.0, t_heads=8, t_dropout=0.02, t_layer_scale=True,
                   t_gelu=True, t_emb="sin", t_max_positions=10000, t_max_period=10000.0,
                   t_weight_pos_embed=1.0, t_cape_mean_normalize=True, t_cape_augment=True,
                   t_cape_glob_loc_scale=[5000.0, 1.0, 1.4], t_sin_random_shift=0,
                   t_norm_in=True, t_norm_in_group=False, t_group_norm=False,
                   t_norm_first=True, t_norm_out=True, t_weight_decay=0.0, t_lr=None,
                   t_sparse_self_attn=False, t_sparse_cross_attn=False, t_mask_type="diag",
                   t_mask_random_seed=42, t_sparse_attn_window=400, t_global_window=100,
                   t_sparsity=0.95, t_auto_sparsity=False, t_cross_first=False, rescale=0.1)


def setup_imports(src, stubs):
    for p in (src, stubs):
        if not os.path.isdir(p):
            raise SystemExit("make-reference: %s not found (see --demucs-src/--stubs)" % p)
    sys.path.insert(0, os.path.abspath(stubs))
    sys.path.insert(0, os.path.abspath(src))


# ---------------------------------------------------------------- file writers

def write_wav_f32(path, data):
    """data: list of C channel sequences (floats) of equal length -> IEEE float WAV."""
    import numpy as np
    arr = np.asarray(data, dtype="<f4")          # [C, L]
    c, n = arr.shape
    frames = np.ascontiguousarray(arr.T).tobytes()
    fmt = struct.pack("<HHIIHHH", 3, c, SR, SR * c * 4, c * 4, 32, 0)   # cbSize 0
    fact = struct.pack("<I", n)
    body = (b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
            + b"fact" + struct.pack("<I", len(fact)) + fact
            + b"data" + struct.pack("<I", len(frames)) + frames)
    with open(path, "wb") as f:
        f.write(b"RIFF" + struct.pack("<I", len(body)) + body)


def write_safetensors(path, tensors, meta):
    """tensors: list of (name, float32 numpy array)."""
    import numpy as np
    header = {"__metadata__": {k: str(v) for k, v in meta.items()}}
    off = 0
    blobs = []
    for name, arr in tensors:
        b = np.ascontiguousarray(arr, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(arr.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for b in blobs:
            f.write(b)


# ---------------------------------------------------------------- model + audio

def o1_randomise(model, gen):
    """Random init leaves LayerScale at 1e-4/1e-3 and norms at identity, which
    would hide a missing branch: give them O(1) random values."""
    import torch
    from torch import nn
    with torch.no_grad():
        for m in model.modules():
            if type(m).__name__ == "LayerScale":
                m.scale.copy_(torch.rand(m.scale.shape, generator=gen) + 0.5)
            elif isinstance(m, (nn.GroupNorm, nn.LayerNorm)):
                if m.weight is not None:
                    m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)


def make_model(spec, seed):
    import torch
    from demucs.htdemucs import HTDemucs
    torch.manual_seed(seed)
    model = HTDemucs(*spec.get("args", []), **spec["kwargs"])
    o1_randomise(model, torch.Generator().manual_seed(seed + 1000))
    return model


def save_model(model, path):
    """As demucs saves a trained model: states.serialize_model(half=True) + torch.save."""
    import torch
    from demucs.states import serialize_model
    pkg = serialize_model(model, {"model": "htdemucs", "seed": 42, "dset": {"name": "fixture"}},
                          half=True)
    torch.save(pkg, path)
    return pkg


def load_model(path):
    import torch
    from demucs.states import load_model as demucs_load
    pkg = torch.load(path, map_location="cpu", weights_only=False)
    model = demucs_load(pkg)      # builds klass(*args, **kwargs), load_state_dict
    return model.float().eval(), pkg


def make_mix(length, channels, seed):
    """A deterministic music-like test signal: a few harmonic tones with vibrato,
    decaying noise bursts (drum-like) and a low bass line; peak about 0.5."""
    import torch
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(length, dtype=torch.float64) / SR
    out = []
    for c in range(channels):
        x = torch.zeros(length, dtype=torch.float64)
        for _ in range(4):
            f0 = 110.0 * 2 ** (float(torch.rand(1, generator=g)) * 4)
            vib = 1 + 0.01 * torch.sin(2 * math.pi * 5 * t)
            for h in range(1, 6):
                x += 0.05 / h * torch.sin(2 * math.pi * f0 * h * t * vib + float(torch.rand(1, generator=g)) * 6)
        x += 0.15 * torch.sin(2 * math.pi * 55.0 * t + c)
        period = int(SR * 0.25)
        env = torch.exp(-((torch.arange(length) % period).double() / (0.03 * SR)))
        x += 0.2 * env * torch.randn(length, generator=g, dtype=torch.float64)
        x += 0.01 * torch.randn(length, generator=g, dtype=torch.float64)
        out.append(x)
    x = torch.stack(out)
    x = x / x.abs().max() * 0.5
    return x.float()                      # what a float WAV holds, exactly


def state_lines(state, prefix=""):
    names = {"torch.float16": "F16", "torch.float32": "F32", "torch.bfloat16": "BF16"}
    return ["%s%s %s %s" % (prefix, k, names[str(v.dtype)], ",".join(str(d) for d in v.shape))
            for k, v in state.items()]


def separate(model, wav, channels):
    """The demucs CLI computation (shifts 0, split, overlap 0.25), fp32, CPU."""
    import torch
    from demucs.apply import apply_model
    if wav.shape[0] == 1 and channels == 2:
        wav = wav.expand(2, -1)           # convert_audio_channels: mono -> stereo
    ref = wav.mean(0)
    mean, std = ref.mean(), ref.std()
    w = (wav - mean) / std
    with torch.no_grad():
        out = apply_model(model, w[None], shifts=0, split=True, overlap=0.25, device="cpu")[0]
    return out * std + mean, w


# ---------------------------------------------------------------- cases

def build_case(case, root):
    import torch
    from demucs.apply import BagOfModels
    d = os.path.join(root, case["name"])
    os.makedirs(d, exist_ok=True)
    t0 = time.perf_counter()
    seed = 1234 + 17 * sum(map(ord, case["name"]))
    models, lines, pkgs = [], [], []
    bag = len(case["models"]) > 1
    for i, spec in enumerate(case["models"]):
        fname = "model%d.th" % i if bag else "model.th"
        save_model(make_model(spec, seed + i), os.path.join(d, fname))
        m, pkg = load_model(os.path.join(d, fname))
        models.append(m)
        pkgs.append(pkg)
        lines += state_lines(pkg["state"], "models.%d." % i if bag else "")
    with open(os.path.join(d, "state.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    model = BagOfModels(models, case.get("weights")) if bag else models[0]
    with open(os.path.join(d, "convert.args"), "w") as f:
        if case.get("weights"):
            f.write("--weights %s\n" % ";".join(",".join(repr(float(v)) for v in row)
                                                 for row in case["weights"]))
        else:
            f.write("")

    mix = make_mix(case["length"], case["channels"], seed)
    write_wav_f32(os.path.join(d, "mix.wav"), mix.numpy())
    stems, wnorm = separate(model, mix, models[0].audio_channels)
    tensors = [("stems", stems.numpy())]
    m0 = models[0]
    meta = {
        "sources": ",".join(m0.sources), "samplerate": m0.samplerate,
        "segment": str(Fraction(m0.segment).limit_denominator(1 << 20)),
        "shifts": 0, "overlap": 0.25, "split": "true",
        "torch": torch.__version__, "case": case["name"], "covers": case["covers"],
        "models": json.dumps([{"args": s.get("args", []),
                               "kwargs": {k: (str(v) if isinstance(v, Fraction) else v)
                                          for k, v in s["kwargs"].items()}}
                              for s in case["models"]]),
    }
    if case.get("weights"):
        meta["weights"] = json.dumps(case["weights"])
    if case.get("forward"):
        tl = int(m0.segment * m0.samplerate)
        x = wnorm[None, :, :tl].contiguous()
        with torch.no_grad():
            y = m0(x)
        tensors += [("forward_in", x.numpy()), ("forward_out", y.numpy())]
        meta["forward"] = "forward_out = model(forward_in): one direct call on the first " \
                          "training-length segment of the normalised mixture"
    write_safetensors(os.path.join(d, "ref.safetensors"), tensors, meta)
    rms_in = float(mix.pow(2).mean().sqrt())
    rms_out = float(stems.pow(2).mean().sqrt())
    print("%-14s L=%d C=%d S=%d  stems %s  rms in %.4f out %.4f  finite %s  %.1fs" % (
        case["name"], case["length"], case["channels"], len(m0.sources), tuple(stems.shape),
        rms_in, rms_out, bool(torch.isfinite(stems).all()), time.perf_counter() - t0))
    if not bool(torch.isfinite(stems).all()):
        raise SystemExit("make-reference: non-finite output in " + case["name"])


def build_full(out_dir, seconds=30.0):
    import torch
    os.makedirs(out_dir, exist_ok=True)
    t0 = time.perf_counter()
    from demucs.htdemucs import HTDemucs
    torch.manual_seed(4242)
    model = HTDemucs(**FULL_KWARGS)
    o1_randomise(model, torch.Generator().manual_seed(4243))
    save_model(model, os.path.join(out_dir, "model.th"))
    model, pkg = load_model(os.path.join(out_dir, "model.th"))
    with open(os.path.join(out_dir, "state.txt"), "w") as f:
        f.write("\n".join(state_lines(pkg["state"])) + "\n")
    with open(os.path.join(out_dir, "convert.args"), "w") as f:
        f.write("")
    mix = make_mix(int(seconds * SR), 2, 4244)
    write_wav_f32(os.path.join(out_dir, "mix.wav"), mix.numpy())
    stems, wnorm = separate(model, mix, 2)
    tensors = [("stems", stems.numpy())]
    tl = int(model.segment * model.samplerate)
    if wnorm.shape[-1] >= tl:
        x = wnorm[None, :, :tl].contiguous()
        with torch.no_grad():
            y = model(x)
        tensors += [("forward_in", x.numpy()), ("forward_out", y.numpy())]
    write_safetensors(os.path.join(out_dir, "ref.safetensors"), tensors, {
        "sources": ",".join(model.sources), "samplerate": model.samplerate,
        "segment": str(model.segment), "shifts": 0, "overlap": 0.25, "split": "true",
        "torch": torch.__version__, "case": "full",
        "models": json.dumps([{"args": [], "kwargs": {k: (str(v) if isinstance(v, Fraction) else v)
                                                      for k, v in FULL_KWARGS.items()}}])})
    print("full: stems %s rms out %.4f  %.1fs" % (tuple(stems.shape),
          float(stems.pow(2).mean().sqrt()), time.perf_counter() - t0))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="tests/fixtures/htdemucs")
    ap.add_argument("--case", action="append", help="only these cases (repeatable)")
    ap.add_argument("--full", metavar="OUT_DIR", help="full-size htdemucs, 30 s mixture")
    ap.add_argument("--seconds", type=float, default=30.0, help="mixture length for --full")
    ap.add_argument("--demucs-src", default=".ref", help="folder holding demucs/")
    ap.add_argument("--stubs", default=".ref/stubs", help="stand-ins for training imports")
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    setup_imports(a.demucs_src, a.stubs)
    import torch
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.use_deterministic_algorithms(True)
    if a.full:
        build_full(a.full, a.seconds)
        return
    names = [c["name"] for c in CASES]
    for n in a.case or []:
        if n not in names:
            raise SystemExit("make-reference: unknown case %s (have %s)" % (n, ", ".join(names)))
    for case in CASES:
        if not a.case or case["name"] in a.case:
            build_case(case, a.out)


if __name__ == "__main__":
    main()
