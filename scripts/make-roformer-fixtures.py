#!/usr/bin/env python3
"""make-roformer-fixtures.py - reference outputs of BS-RoFormer and Mel-Band
RoFormer from the reference implementation (ZFTurbo's
Music-Source-Separation-Training, "MSST"), for stemsplit's tests.

Needs torch, numpy and PyYAML, and MSST's files (models/bs_roformer/
{bs_roformer,mel_band_roformer,attend}.py, utils/model_utils.py) plus pure-Python
einops and rotary_embedding_torch under --ref (default .ref: msst/ and pylib/).
Packages MSST imports that are not needed here are replaced by the stand-ins in
tests/fixtures/roformer/stubs/ (see its README.md).

  make-roformer-fixtures.py [--ref .ref] [--out tests/fixtures/roformer] [CASE ...]
      the small fixtures: CASE/config.yaml, model.ckpt, mix.wav, ref.safetensors
  make-roformer-fixtures.py --full OUTDIR [--seconds 30] [--device cpu|cuda]
      the two full-size configs (viperx BS-RoFormer ep_317, KimberleyJensen Mel-Band
      RoFormer) with random weights: OUTDIR/<name>/ as above.

ref.safetensors holds F32 `stems` [S, C, L]: what MSST's inference.py writes for
each target stem (utils.model_utils.demix with the config, then denormalize when
inference.normalize), and `forward_in` [1, C, chunk] / `forward_out`
[1, S, C, chunk]: one direct model call on the first chunk demix feeds the model.
"""
import argparse
import importlib.util
import os
import struct
import sys
import types

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
STUBS = os.path.join(ROOT, "tests", "fixtures", "roformer", "stubs")
sys.path.insert(0, HERE)
import torchckpt  # noqa: E402

# ------------------------------------------------------------------ cases

BS_BANDS_256 = (4,) * 8 + (8,) * 6 + (16,) * 2 + (17,)          # 129 bins
BS_BANDS_512 = (4,) * 16 + (8,) * 8 + (16,) * 4 + (32,) + (33,)  # 257 bins

CASES = {
    # several chunks, border reflect padding (length > 2*border), last chunk zero padded
    "bs_stereo_1stem": dict(
        arch="bs_roformer", seed=1, samples=14000, save="plain",
        model=dict(dim=32, depth=2, stereo=True, num_stems=1, time_transformer_depth=1,
                   freq_transformer_depth=1, linear_transformer_depth=0,
                   freqs_per_bands=BS_BANDS_256, dim_head=16, heads=2, attn_dropout=0.1,
                   ff_dropout=0.1, flash_attn=False, dim_freqs_in=129, stft_n_fft=256,
                   stft_hop_length=64, stft_win_length=256, stft_normalized=False,
                   mask_estimator_depth=2, mlp_expansion_factor=1, zero_dc=True,
                   multi_stft_resolution_loss_weight=1.0,
                   multi_stft_resolutions_window_sizes=(4096, 2048, 1024, 512, 256),
                   multi_stft_hop_size=147, multi_stft_normalized=False),
        instruments=["vocals", "other"], target="vocals", chunk=8192, overlap=2),
    # mono, 4 stems, skip connections, mask depth 1, saved in float16; last chunk reflect padded
    "bs_mono_4stem": dict(
        arch="bs_roformer", seed=2, samples=13000, save="fp16",
        model=dict(dim=32, depth=2, stereo=False, num_stems=4, time_transformer_depth=1,
                   freq_transformer_depth=2, freqs_per_bands=BS_BANDS_256, dim_head=16,
                   heads=2, flash_attn=False, stft_n_fft=256, stft_hop_length=128,
                   stft_win_length=256, mask_estimator_depth=1, skip_connection=True,
                   zero_dc=True),
        instruments=["drums", "bass", "other", "vocals"], target=None, chunk=8192, overlap=4),
    # Mel-Band, stereo, one target, state dict wrapped under `state_dict`
    "mel_stereo_1stem": dict(
        arch="mel_band_roformer", seed=3, samples=12000, save="state_dict",
        model=dict(dim=32, depth=1, stereo=True, num_stems=1, time_transformer_depth=1,
                   freq_transformer_depth=1, num_bands=12, dim_head=16, heads=2,
                   attn_dropout=0, ff_dropout=0, flash_attn=False, sample_rate=44100,
                   stft_n_fft=256, stft_hop_length=128, stft_win_length=256,
                   mask_estimator_depth=1, mlp_expansion_factor=1),
        instruments=["vocals", "other"], target="vocals", chunk=8192, overlap=2),
    # Mel-Band, mono, 4 stems, mask depth 2, zero_dc false, float16; shorter than 2*border: no border
    # padding, two chunks (reflect then zero padded)
    "mel_mono_4stem": dict(
        arch="mel_band_roformer", seed=4, samples=10000, save="fp16",
        model=dict(dim=32, depth=1, stereo=False, num_stems=4, time_transformer_depth=1,
                   freq_transformer_depth=1, num_bands=8, dim_head=16, heads=2,
                   flash_attn=False, stft_n_fft=256, stft_hop_length=64, stft_win_length=256,
                   mask_estimator_depth=2, mlp_expansion_factor=1, zero_dc=False),
        instruments=["drums", "bass", "other", "vocals"], target=None, chunk=8192, overlap=4),
    # inference.normalize: true; stereo, 2 stems, no target
    "bs_normalize": dict(
        arch="bs_roformer", seed=5, samples=10000, save="plain", normalize=True,
        model=dict(dim=32, depth=1, stereo=True, num_stems=2, time_transformer_depth=1,
                   freq_transformer_depth=1, freqs_per_bands=BS_BANDS_256, dim_head=16,
                   heads=2, flash_attn=False, stft_n_fft=256, stft_hop_length=64,
                   stft_win_length=256, mask_estimator_depth=1),
        instruments=["vocals", "other"], target=None, chunk=8192, overlap=2),
}

FULL = {
    "bs_roformer_viperx_317": ("bs_roformer", "viperx/model_bs_roformer_ep_317_sdr_12.9755.yaml"),
    "mel_band_roformer_kj": ("mel_band_roformer",
                             "KimberleyJensen/config_vocals_mel_band_roformer_kj.yaml"),
}


# ------------------------------------------------------------------ reference code

def load_reference(ref):
    msst, pylib = os.path.join(ref, "msst"), os.path.join(ref, "pylib")
    for d in (msst, pylib):
        if not os.path.isdir(d):
            sys.exit("%s missing: copy MSST's files and einops/rotary_embedding_torch there" % d)
    sys.path[:0] = [STUBS, pylib, msst]
    # import the two model files by path: models/bs_roformer/__init__.py pulls in others
    pkg = types.ModuleType("models.bs_roformer")
    pkg.__path__ = [os.path.join(msst, "models", "bs_roformer")]
    import models  # noqa: F401  (MSST's models/ package)
    sys.modules["models.bs_roformer"] = pkg
    mods = {}
    for name in ("attend", "bs_roformer", "mel_band_roformer"):
        spec = importlib.util.spec_from_file_location(
            "models.bs_roformer." + name, os.path.join(pkg.__path__[0], name + ".py"))
        m = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = m
        spec.loader.exec_module(m)
        mods[name] = m
    import utils.model_utils as mu
    import utils.audio_utils as au
    spec = importlib.util.spec_from_file_location("convert_msst",
                                                  os.path.join(HERE, "convert-msst.py"))
    conv = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conv)
    return mods, mu, au, conv


# ------------------------------------------------------------------ files

def yaml_text(cfg):
    """MSST-style YAML: block mappings/sequences, tuples tagged !!python/tuple."""
    out = []

    def scalar(v):
        if v is None:
            return "null"
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, float):
            return repr(v) if "e" not in repr(v) or "." in repr(v) else "%.1e" % v
        return str(v)

    def emit(d, ind):
        for k, v in d.items():
            if isinstance(v, dict):
                out.append("%s%s:" % (" " * ind, k))
                emit(v, ind + 2)
            elif isinstance(v, (list, tuple)):
                out.append("%s%s:%s" % (" " * ind, k, " !!python/tuple" if isinstance(v, tuple)
                                        else ""))
                out.extend("%s  - %s" % (" " * ind, scalar(x)) for x in v)
            else:
                out.append("%s%s: %s" % (" " * ind, k, scalar(v)))
        out.append("") if ind == 0 else None

    emit(cfg, 0)
    return "\n".join(out)


def write_wav_f32(path, x, sr):
    """x: numpy float32 [C, L] -> 32-bit IEEE float WAV."""
    import numpy as np
    C, L = x.shape
    data = np.ascontiguousarray(x.T.astype("<f4")).tobytes()
    fmt = struct.pack("<HHIIHH", 3, C, sr, sr * C * 4, C * 4, 32)
    body = (b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"fact" +
            struct.pack("<II", 4, L) + b"data" + struct.pack("<I", len(data)) + data)
    with open(path, "wb") as f:
        f.write(b"RIFF" + struct.pack("<I", len(body)) + body)


def write_ref(path, arrays, meta):
    import numpy as np
    tensors = [(k, "F32", list(v.shape), np.ascontiguousarray(v.astype("<f4")).tobytes())
               for k, v in arrays.items()]
    torchckpt.write_safetensors(path, tensors, meta)


def make_mix(seed, C, L, sr):
    import numpy as np
    rs = np.random.RandomState(seed)
    t = np.arange(L) / sr
    x = np.zeros((C, L))
    for c in range(C):
        for f, a in ((110.0 * (c + 1), 0.2), (440.0 + 37 * c, 0.15), (2500.0 + 300 * c, 0.05),
                     (7000.0, 0.03)):
            x[c] += a * np.sin(2 * np.pi * f * t + rs.uniform(0, 6.28))
        x[c] += 0.05 * rs.randn(L)
        x[c] *= 0.6 + 0.4 * np.sin(2 * np.pi * 3.0 * t + c)      # slow amplitude change
    return x.astype(np.float32)


# ------------------------------------------------------------------ one case

def randomize(model, seed):
    import torch
    g = torch.Generator().manual_seed(seed + 1000)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("gamma"):                    # RMSNorm: ones at init hide bugs
                p.copy_(torch.rand(p.shape, generator=g) + 0.5)


def build(mods, arch, model_cfg):
    cls = mods["bs_roformer"].BSRoformer if arch == "bs_roformer" \
        else mods["mel_band_roformer"].MelBandRoformer
    kw = dict(model_cfg)
    if "freqs_per_bands" in kw:
        kw["freqs_per_bands"] = tuple(kw["freqs_per_bands"])
    if "multi_stft_resolutions_window_sizes" in kw:
        kw["multi_stft_resolutions_window_sizes"] = tuple(kw["multi_stft_resolutions_window_sizes"])
    return cls(**kw)


def first_chunk(mix, chunk, overlap):
    """The first chunk demix (generic mode) hands the model, and the chunk windows."""
    import torch
    import torch.nn.functional as F
    x = torch.tensor(mix, dtype=torch.float32)
    step = chunk // overlap
    border = chunk - step
    L = x.shape[-1]
    padded = L > 2 * border and border > 0
    if padded:
        x = F.pad(x, (border, border), mode="reflect")
    wins, i = [], 0
    while i < x.shape[1]:
        n = min(chunk, x.shape[1] - i)
        wins.append((i, n, "reflect" if n > chunk // 2 else "constant"))
        i += step
    part = x[:, :chunk]
    part = F.pad(part, (0, chunk - part.shape[-1]), mode=wins[0][2], value=0)
    return part, wins, border, padded


def run_case(name, spec, out, mods, mu, au, conv, device="cpu", check_size=True):
    import numpy as np
    import torch
    import yaml
    from ml_collections import ConfigDict
    os.makedirs(out, exist_ok=True)
    arch, sr = spec["arch"], 44100
    training = {"instruments": spec["instruments"], "target_instrument": spec["target"],
                "use_amp": False}
    cfg = {"audio": {"chunk_size": spec["chunk"], "num_channels": 2, "sample_rate": sr,
                     "min_mean_abs": 0.0},
           "model": spec["model"], "training": training,
           "inference": {"batch_size": 1, "num_overlap": spec["overlap"]}}
    if spec.get("normalize"):
        cfg["inference"]["normalize"] = True
    if spec.get("yaml_text"):
        text = spec["yaml_text"]
    else:
        text = ("# %s: stemsplit test fixture (scripts/make-roformer-fixtures.py)\n"
                % name) + yaml_text(cfg)
    with open(os.path.join(out, "config.yaml"), "w") as f:
        f.write(text)
    config = ConfigDict(yaml.unsafe_load(text))       # as MSST loads its configs
    torch.manual_seed(spec["seed"])
    model = build(mods, arch, dict(config.model))
    randomize(model, spec["seed"])
    sd = model.state_dict()
    save = spec["save"]
    if save == "fp16":
        obj = {k: v.half() for k, v in sd.items()}
    elif save == "state_dict":
        obj = {"state_dict": sd, "epoch": 7}
    else:
        obj = sd
    ck = os.path.join(out, "model.ckpt")
    torch.save(obj, ck)
    # the reference runs the model loaded back from the file (fp16-rounded where saved so)
    loaded = torch.load(ck, map_location="cpu")
    if "state_dict" in loaded:
        loaded = loaded["state_dict"]
    model = build(mods, arch, dict(config.model))
    model.load_state_dict({k: v.float() for k, v in loaded.items()})
    model.eval().to(device)
    C = 2 if config.model.get("stereo", False) else 1
    mix = make_mix(spec["seed"], C, spec["samples"], sr)
    write_wav_f32(os.path.join(out, "mix.wav"), mix, sr)
    # inference.py: normalize, demix, denormalize each target stem
    x = mix
    norm = config.inference.get("normalize") is True
    if norm:
        x, params = au.normalize_audio(mix)
    res = mu.demix(config, model, x, device, model_type=arch, pbar=False)
    sources = mu.prefer_target_instrument(config)
    stems = []
    for s in sources:
        est = res[s]
        if norm:
            est = au.denormalize_audio(est, params)
        stems.append(np.asarray(est, dtype=np.float32))
    stems = np.stack(stems)
    chunk = config.inference.get("chunk_size", config.audio.chunk_size)
    fin, wins, border, padded = first_chunk(x, chunk, config.inference.num_overlap)
    with torch.inference_mode():
        fout = model(fin[None].to(device)).cpu()
    S = len(sources)
    fout = fout.reshape(1, S, C, -1).numpy()              # Mel squeezes a single stem
    # sanity: stems of a useful size, different from each other
    rms = lambda a: float(np.sqrt(np.mean(np.square(a, dtype=np.float64))))
    ratios = [rms(st) / rms(mix) for st in stems]
    print("%s: %s C=%d L=%d S=%d chunks=%d border=%d padded=%s stem/mix rms %s" % (
        name, arch, C, mix.shape[1], S, len(wins), border, padded,
        " ".join("%.3f" % r for r in ratios)), file=sys.stderr)
    if check_size:
        assert all(0.05 < r < 3 for r in ratios), ratios
        for i in range(S):
            for j in range(i):
                assert rms(stems[i] - stems[j]) > 0.05 * rms(mix), (i, j)
    assert np.all(np.isfinite(stems)) and stems.shape == (S, C, mix.shape[1])
    meta = {"sources": ",".join(sources), "border": str(border),
            "border_padded": "true" if padded else "false",
            "chunks": ";".join("%d,%d,%s" % w for w in wins),
            "torch": torch.__version__, "normalize": "true" if norm else "false"}
    write_ref(os.path.join(out, "ref.safetensors"),
              {"stems": stems, "forward_in": fin[None].numpy(), "forward_out": fout}, meta)
    # the converter's band assignment must equal the reference model's buffers, and its
    # output must hold every tensor of the checkpoint, bit for bit
    if arch == "mel_band_roformer":
        check_mel(conv, model, config)
    check_converted(conv, out, loaded, made=lambda k: k.startswith("mel."))
    return model


def check_converted(conv, out, state, made=lambda k: False, dropped=lambda k: False):
    """convert-msst.py's output of the case holds every tensor of the checkpoint's
    state bit for bit, less those `dropped` (a training counter), plus those the
    converter `made` itself (mel.*).  make-mdx23c-fixtures.py uses it too."""
    import json
    import numpy as np
    tmp = os.path.join(out, ".converted.safetensors")
    try:
        rc = conv.main(["-o", tmp, os.path.join(out, "config.yaml"),
                        os.path.join(out, "model.ckpt")])
        assert rc == 0, "convert-msst.py failed"
        with open(tmp, "rb") as f:
            b = f.read()
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    h.pop("__metadata__")
    names = {k for k in h if not made(k)}
    want = {k for k in state if not dropped(k)}
    assert names == want, sorted(names ^ want)[:5]
    for k, v in h.items():
        if made(k):
            continue
        lo, hi = v["data_offsets"]
        dt = {"F32": "<f4", "F16": "<f2"}[v["dtype"]]
        got = np.frombuffer(b[8 + n + lo:8 + n + hi], dtype=dt).reshape(v["shape"])
        w = state[k].numpy()
        assert got.dtype == w.dtype and np.array_equal(got, w), k


def check_mel(conv, model, config):
    m = config.model
    idx, per_band, per_freq = conv.mel_bands(m.get("sample_rate", 44100), m.stft_n_fft,
                                             m.num_bands, "config")
    fi = model.freq_indices.cpu().tolist()
    if m.get("stereo", False):
        assert fi[1::2] == [2 * f + 1 for f in idx] and fi[0::2] == [2 * f for f in idx], \
            "freq_indices differ"
    else:
        assert fi == idx, "freq_indices differ"
    assert model.num_freqs_per_band.cpu().tolist() == per_band, "num_freqs_per_band differ"
    assert model.num_bands_per_freq.cpu().tolist() == per_freq, "num_bands_per_freq differ"


def full(args, mods, mu, au, conv):
    import yaml
    for name, (arch, rel) in FULL.items():
        path = os.path.join(args.ref, "msst", "configs", rel)
        y = yaml.unsafe_load(open(path))
        y["model"]["flash_attn"] = False
        y["training"]["use_amp"] = False
        y["inference"]["batch_size"] = 1
        text = ("# %s with flash_attn false, use_amp false, inference.batch_size 1 "
                "(scripts/make-roformer-fixtures.py --full)\n" % rel) + yaml.dump(y)
        spec = dict(arch=arch, seed=11, samples=args.seconds, save="plain", yaml_text=text,
                    model=y["model"], instruments=y["training"]["instruments"],
                    target=y["training"].get("target_instrument"),
                    chunk=y["audio"]["chunk_size"], overlap=y["inference"]["num_overlap"])
        run_case(name, spec, os.path.join(args.full, name), mods, mu, au, conv,
                 device=args.device, check_size=False)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ref", default=os.path.join(ROOT, ".ref"))
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures", "roformer"))
    ap.add_argument("--full", metavar="OUTDIR", help="the two full-size configs instead")
    ap.add_argument("--seconds", type=float, default=30.0, help="--full: mixture length")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("cases", nargs="*", help="default: all (%s)" % ", ".join(CASES))
    args = ap.parse_args()
    import torch
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    mods, mu, au, conv = load_reference(os.path.abspath(args.ref))
    if args.full:
        args.seconds = int(round(args.seconds * 44100))
        full(args, mods, mu, au, conv)
        return
    for name in args.cases or list(CASES):
        run_case(name, CASES[name], os.path.join(args.out, name), mods, mu, au, conv)


if __name__ == "__main__":
    main()
