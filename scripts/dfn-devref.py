#!/usr/bin/env python3
"""dfn-devref.py - a development reference for models/deepfilternet: runs
DeepFilterNet3's own network code (df/deepfilternet3.py, df/modules.py,
df/multiframe.py) with random weights on a random signal, the libDF feature
functions ported to numpy here, and writes

  OUT/model.safetensors  the weights under their state-dict names and the
                         dfn.* / stemsplit.* metadata of docs/deepfilternet-format.md
                         (the subset the C model reads)
  OUT/ref.safetensors    `mix` [C, L], `speech` [C, L] (enhance(): padded by
                         n_fft, cut by n_fft - hop), `lsnr` [C, T]

  dfn-devref.py [--ref .ref/dfn/DeepFilterNet] [--out build/dfn-dev] [--full]
                [--seconds S] [--channels C] [--seed N]

Ported from libDF/src/lib.rs (Rust) and pyDF (the Python binding):
  analysis   -> DFState::analysis (frame_analysis: Vorbis window over the last
                n_fft samples, zero history at the start, rfft, times wnorm)
  synthesis  -> DFState::synthesis (frame_synthesis: irfft without 1/N, the
                window, overlap-add; imaginary parts of DC and Nyquist ignored)
  erb        -> compute_band_corr (mean power per band), 10 log10(x + 1e-10)
  erb_norm   -> band_mean_norm_erb, state from MEAN_NORM_INIT
  unit_norm  -> band_unit_norm, state from UNIT_NORM_INIT
  erb_widths -> erb_fb(sr, fft, nb_erb, min_nb_freqs = 2)
"""
import argparse
import json
import math
import os
import sys
import types

import numpy as np
import torch

MEAN_NORM_INIT = (-60.0, -90.0)
UNIT_NORM_INIT = (0.001, 0.0001)


def erb_widths(sr, fft_size, nb_bands, min_nb_freqs=2):
    f2e = lambda f: 9.265 * math.log1p(f / (24.7 * 9.265))
    e2f = lambda e: 24.7 * 9.265 * (math.exp(e / 9.265) - 1.0)
    nyq = sr // 2
    fw = np.float32(sr) / np.float32(fft_size)
    lo, hi = f2e(0.0), f2e(float(nyq))
    step = (hi - lo) / nb_bands
    erb = [0] * nb_bands
    prev = 0
    over = 0
    for i in range(1, nb_bands + 1):
        f = np.float32(e2f(np.float32(lo + i * step)))
        fb = int(round(float(f / fw)))
        n = fb - prev - over
        if n < min_nb_freqs:
            over = min_nb_freqs - n
            n = min_nb_freqs
        else:
            over = 0
        erb[i - 1] = n
        prev = fb
    erb[-1] += 1
    too_large = sum(erb) - (fft_size // 2 + 1)
    if too_large > 0:
        erb[-1] -= too_large
    assert sum(erb) == fft_size // 2 + 1
    return np.array(erb, dtype=np.int64)


def vorbis(n_fft):
    h = n_fft // 2
    i = np.arange(n_fft, dtype=np.float64)
    s = np.sin(0.5 * np.pi * (i + 0.5) / h)
    return np.sin(0.5 * np.pi * s * s).astype(np.float32)


def analysis(x, n_fft, hop):
    """x [C, L] -> [C, L // hop, n_fft/2+1] complex64 (DFState::analysis)"""
    w = vorbis(n_fft).astype(np.float64)
    wnorm = 1.0 / (n_fft * n_fft / (2 * hop))
    C, L = x.shape
    T = L // hop
    pad = np.concatenate([np.zeros((C, n_fft - hop)), x.astype(np.float64)], axis=1)
    fr = np.stack([pad[:, t * hop:t * hop + n_fft] for t in range(T)], axis=1)
    return (np.fft.rfft(fr * w, axis=-1) * wnorm).astype(np.complex64)


def synthesis(spec, n_fft, hop):
    """[C, T, F] -> [C, T * hop] (DFState::synthesis)"""
    w = vorbis(n_fft).astype(np.float64)
    C, T, _ = spec.shape
    fr = np.fft.irfft(spec.astype(np.complex128), n=n_fft, axis=-1) * n_fft * w
    out = np.zeros((C, (T - 1) * hop + n_fft))
    for t in range(T):
        out[:, t * hop:t * hop + n_fft] += fr[:, t]
    # frame t's first hop samples complete output block t (the memory holds the rest)
    return out[:, :T * hop].astype(np.float32)


def erb_feat(spec, widths, alpha):
    C, T, F = spec.shape
    p = (spec.real.astype(np.float32) ** 2 + spec.imag.astype(np.float32) ** 2)
    nb = len(widths)
    out = np.zeros((C, T, nb), np.float32)
    b0 = 0
    for i, w in enumerate(widths):
        out[:, :, i] = p[:, :, b0:b0 + w].mean(axis=-1)
        b0 += w
    out = (np.log10(out + 1e-10) * 10.0).astype(np.float32)
    st = np.linspace(MEAN_NORM_INIT[0], MEAN_NORM_INIT[1], nb).astype(np.float32)
    st = np.tile(st, (C, 1))
    a = np.float32(alpha)
    for t in range(T):
        st = out[:, t] * (1 - a) + st * a
        out[:, t] = (out[:, t] - st) / 40.0
    return out


def unit_norm(spec, alpha):
    C, T, F = spec.shape
    st = np.tile(np.linspace(UNIT_NORM_INIT[0], UNIT_NORM_INIT[1], F).astype(np.float32), (C, 1))
    a = np.float32(alpha)
    out = np.zeros_like(spec)
    for t in range(T):
        st = np.abs(spec[:, t]).astype(np.float32) * (1 - a) + st * a
        out[:, t] = spec[:, t] / np.sqrt(st)
    return out


def stub_modules(ref):
    lg = types.ModuleType("loguru")

    class _L:
        def __getattr__(self, k):
            return lambda *a, **kw: None
    lg.logger = _L()
    sys.modules.setdefault("loguru", lg)
    libdf = types.ModuleType("libdf")
    libdf.DF = object
    libdf.unit_norm_init = lambda n: np.linspace(UNIT_NORM_INIT[0], UNIT_NORM_INIT[1], n).astype(np.float32)
    sys.modules["libdf"] = libdf
    df = types.ModuleType("df")
    df.__path__ = [os.path.join(ref, "df")]
    sys.modules["df"] = df


SMALL = dict(sr=48000, fft_size=192, hop_size=96, nb_erb=16, nb_df=24, df_order=5, df_lookahead=2,
             conv_lookahead=2, conv_ch=8, emb_hidden_dim=32, emb_num_layers=3, df_hidden_dim=32,
             df_num_layers=2, df_pathway_kernel_size_t=5, enc_linear_groups=4, linear_groups=4,
             df_gru_skip="groupedlinear", lsnr_max=35, lsnr_min=-15, norm_tau=1.0)
FULL = dict(SMALL, fft_size=960, hop_size=480, nb_erb=32, nb_df=96, conv_ch=64, emb_hidden_dim=256,
            df_hidden_dim=256, enc_linear_groups=32, linear_groups=16)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ref", default=".ref/dfn/DeepFilterNet")
    ap.add_argument("--out", default="build/dfn-dev")
    ap.add_argument("--full", action="store_true")
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--channels", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    cfg = FULL if a.full else SMALL
    stub_modules(a.ref)
    from df.config import config
    ini = os.path.join(a.out, "config.ini")
    os.makedirs(a.out, exist_ok=True)
    with open(ini, "w") as f:
        f.write("[train]\nmodel = deepfilternet3\n[df]\n")
        for k in ("sr", "fft_size", "hop_size", "nb_erb", "nb_df", "df_order", "df_lookahead", "norm_tau",
                  "lsnr_max", "lsnr_min"):
            f.write("%s = %s\n" % (k, cfg[k]))
        f.write("[deepfilternet]\n")
        for k in ("conv_lookahead", "conv_ch", "emb_hidden_dim", "emb_num_layers", "df_hidden_dim", "df_num_layers",
                  "df_pathway_kernel_size_t", "enc_linear_groups", "linear_groups", "df_gru_skip"):
            f.write("%s = %s\n" % (k, cfg[k]))
        f.write("conv_kernel = 1,3\nconvt_kernel = 1,3\nconv_kernel_inp = 3,3\n")
    config.load(ini, config_must_exist=True)
    import df.deepfilternet3 as D
    from df.modules import erb_fb
    torch.manual_seed(a.seed)
    widths = erb_widths(cfg["sr"], cfg["fft_size"], cfg["nb_erb"])
    erb = erb_fb(widths, cfg["sr"], inverse=False)
    erb_inv = erb_fb(widths, cfg["sr"], inverse=True)
    model = D.DfNet(erb, erb_inv, run_df=True, train_mask=True).eval()
    g = torch.Generator().manual_seed(a.seed + 1)
    sd = model.state_dict()
    for k, v in sd.items():
        if k.endswith("running_mean"):
            v.copy_(torch.randn(v.shape, generator=g) * 0.1)
        elif k.endswith("running_var"):
            v.copy_(torch.rand(v.shape, generator=g) * 0.5 + 0.75)
        elif k.endswith("num_batches_tracked") or k.startswith("erb_fb") or k.startswith("mask."):
            continue
        elif k.endswith(".bias") or (k.endswith(".weight") and v.dim() == 1):
            v.copy_(torch.randn(v.shape, generator=g) * 0.1 + (1.0 if k.endswith("weight") else 0.0))
    n_fft, hop = cfg["fft_size"], cfg["hop_size"]
    rs = np.random.RandomState(a.seed)
    L = int(a.seconds * cfg["sr"])
    t = np.arange(L) / cfg["sr"]
    mix = np.stack([0.3 * np.sin(2 * np.pi * (220 + 50 * c) * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
                    + 0.05 * rs.randn(L) for c in range(a.channels)]).astype(np.float32)
    alpha = D.get_norm_alpha(False) if hasattr(D, "get_norm_alpha") else None
    from df.utils import get_norm_alpha
    alpha = get_norm_alpha(False)
    # enhance(): pad by n_fft, features, model, synthesis, cut by n_fft - hop
    x = np.concatenate([mix, np.zeros((a.channels, n_fft), np.float32)], axis=1)
    spec = analysis(x, n_fft, hop)
    ef = torch.from_numpy(erb_feat(spec, widths, alpha)).unsqueeze(1)
    sf = torch.view_as_real(torch.from_numpy(unit_norm(spec[..., :cfg["nb_df"]], alpha))).unsqueeze(1)
    sp = torch.view_as_real(torch.from_numpy(spec)).unsqueeze(1)
    with torch.no_grad():
        enh, m, lsnr, _ = model(sp.clone(), ef, sf)
    enh = torch.view_as_complex(enh.squeeze(1).contiguous()).numpy()
    y = synthesis(enh, n_fft, hop)
    d = n_fft - hop
    speech = y[:, d:L + d]
    tensors = []
    for k, v in model.state_dict().items():
        if k.endswith("num_batches_tracked") or k == "erb_fb" or k.startswith("mask."):
            continue
        tensors.append((k, v.detach().float().numpy()))
    meta = {"stemsplit.architecture": "deepfilternet3", "stemsplit.sources": "speech",
            "stemsplit.residual": "noise", "stemsplit.samplerate": str(cfg["sr"]), "stemsplit.channels": "1",
            "stemsplit.segment": "1", "dfn.erb_widths": ",".join(str(int(w)) for w in widths),
            "dfn.norm_alpha": repr(float(alpha)), "dfn.deepfilternet.conv_lookahead": str(cfg["conv_lookahead"])}
    for k in ("fft_size", "hop_size", "nb_erb", "nb_df", "df_order", "df_lookahead", "lsnr_max", "lsnr_min"):
        meta["dfn.df." + k] = str(cfg[k])
    write_st(os.path.join(a.out, "model.safetensors"), tensors, meta)
    write_st(os.path.join(a.out, "ref.safetensors"),
             [("mix", mix), ("speech", speech.astype(np.float32)), ("lsnr", lsnr.squeeze(-1).numpy()),
              ("erb_mask", m.squeeze(1).numpy())], {})
    print("wrote %s: %d frames, rms speech %.4g mix %.4g" % (a.out, spec.shape[1], float(np.sqrt((speech ** 2).mean())),
                                                             float(np.sqrt((mix ** 2).mean()))))


def write_st(path, tensors, meta):
    header = {"__metadata__": meta} if meta else {}
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
        f.write(len(h).to_bytes(8, "little"))
        f.write(h)
        for b in blobs:
            f.write(b)


if __name__ == "__main__":
    main()
