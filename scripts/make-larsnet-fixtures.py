#!/usr/bin/env python3
"""make-larsnet-fixtures.py - reference outputs of LarsNet (polimi-ispl/larsnet:
unet.py, larsnet.py) for stemsplit's tests, with random weights.

Needs torch and numpy, and LarsNet's unet.py and larsnet.py under --ref (default
.ref/larsnet).  torchaudio, tqdm and yaml, which larsnet.py imports but the
separation does not use, are replaced by empty stand-ins.

  make-larsnet-fixtures.py [--ref .ref/larsnet] [--out tests/fixtures/larsnet]
      the small fixture: reduced channel widths and a small STFT (--widths,
      --n-fft, --hop, -F, -T), written as OUT/small/{config.yaml, kick.pth ...
      cymbals.pth, mix.wav, ref.safetensors}
  make-larsnet-fixtures.py --full OUTDIR [--seconds 30]
      the released architecture (widths 16..512, n_fft 4096, F 2048, T 512) with
      random weights: OUTDIR/full/ as above (large: not committed).

The small case also has mix_N.wav / ref_N.safetensors for N = 100 (one block,
stems and wiener) and 6112 (three full blocks, stems) with the same weights.
ref.safetensors holds F32 `stems` [5, C, L] (LarsNet.separate: one UNetWaveform
per stem) and `wiener` [5, C, L] (LarsNet.separate_wiener with alpha = the
metadata `wiener_alpha`).  Each U-Net's BatchNorm layers get random non-trivial
statistics, and its weights are scaled so that the masks are not saturated.
"""
import argparse
import os
import struct
import sys
import types

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import torchckpt  # noqa: E402

STEMS = ("kick", "snare", "toms", "hihat", "cymbals")


class _Bar:
    """tqdm's stand-in: iterates, ignores descriptions."""

    def __init__(self, it, *a, **k):
        self.it = it

    def __iter__(self):
        return iter(self.it)

    def set_description(self, *a, **k):
        pass


def load_reference(ref):
    for name in ("torchaudio", "tqdm", "yaml"):
        if name not in sys.modules:
            try:
                __import__(name)
            except ImportError:
                m = types.ModuleType(name)
                m.tqdm = _Bar
                sys.modules[name] = m
    sys.path.insert(0, ref)
    import unet
    import larsnet
    return unet, larsnet


def build_unet(unet, cls, widths, F, T, n_fft, hop):
    """The reference's UNet (cls: UNet or UNetWaveform) with channel widths `widths`
    (six; the released model has 16, 32, 64, 128, 256, 512) and an n_fft/hop STFT."""
    import torch
    m = cls(input_size=(2, F, T), device="cpu")
    w = [2] + list(widths)
    for k in range(1, 7):
        setattr(m, "enc%d" % k, unet.UNetEncoderBlock(w[k - 1], w[k]))
    for k in range(1, 7):
        cin = w[6] if k == 1 else 2 * w[7 - k]
        setattr(m, "dec%d" % k, unet.UNetDecoderBlock(cin, w[6 - k]))
    u = m.utils
    u.n_fft, u.win_length, u.hop_length = n_fft, n_fft, hop
    u.hann_window = torch.hann_window(n_fft, periodic=True)
    return m


def randomize(m, seed, full):
    import torch
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.endswith("bn.weight") or name == "input_norm.weight":
                p.copy_(0.5 + torch.rand(p.shape, generator=g))
            elif name.endswith("bn.bias") or name == "input_norm.bias":
                p.copy_(0.3 * torch.randn(p.shape, generator=g))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            else:
                fan = p.shape[1] * p.shape[2] * p.shape[3]
                if "conv_trans" in name:
                    fan = p.shape[0] * p.shape[2] * p.shape[3] // 4
                p.copy_(torch.randn(p.shape, generator=g) * (1.0 / fan) ** 0.5)
        for name, b in m.named_buffers():
            if name.endswith("running_mean"):
                scale = 2.0 if name == "input_norm.running_mean" else 0.3
                b.copy_(scale * torch.rand(b.shape, generator=g))
            elif name.endswith("running_var"):
                scale = 20.0 if name == "input_norm.running_var" else 1.0
                b.copy_(scale * (0.5 + torch.rand(b.shape, generator=g)))
            elif name.endswith("num_batches_tracked"):
                b.fill_(1000)
    m.eval()


def yaml_text(sr, n_fft, hop, F, T):
    lines = ["global:", "  sr: %d" % sr, "  n_fft: %d" % n_fft, "  hop_length: %d" % hop,
             "  segment: 11.85", "", "inference_models:"]
    lines += ["  %s: 'pretrained_larsnet_models/%s/pretrained_%s_unet.pth'" % (s, s, s) for s in STEMS]
    for s in STEMS:
        lines += ["", "%s:" % s, "  F: %d" % F, "  T: %d" % T, "  batch_size: 24",
                  "  training_mode: 'stft'", "  model_id: 'default_%s_unet'" % s]
    return "\n".join(lines) + "\n"


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


def make_mix(seed, C, L, sr):
    import numpy as np
    rs = np.random.RandomState(seed)
    t = np.arange(L) / sr
    x = np.zeros((C, L))
    for c in range(C):
        for f, a in ((60.0 * (c + 1), 0.3), (200.0 + 37 * c, 0.15), (2500.0 + 300 * c, 0.05),
                     (9000.0, 0.03)):
            x[c] += a * np.sin(2 * np.pi * f * t + rs.uniform(0, 6.28))
        x[c] += 0.05 * rs.randn(L)
        # drum-like bursts
        for k in range(0, L, 1700):
            n = min(600, L - k)
            x[c, k:k + n] += 0.5 * rs.randn(n) * np.exp(-np.arange(n) / 120.0)
    return x.astype(np.float32)


def make_case(a, out, widths, n_fft, hop, F, T, L, alpha, seed, extra=()):
    import numpy as np
    import torch
    unet, larsnet = load_reference(a.ref)
    os.makedirs(out, exist_ok=True)
    sr = 44100
    with open(os.path.join(out, "config.yaml"), "w") as f:
        f.write(yaml_text(sr, n_fft, hop, F, T))
    wave, spec = {}, {}
    for i, s in enumerate(STEMS):
        torch.manual_seed(seed + i)
        mw = build_unet(unet, unet.UNetWaveform, widths, F, T, n_fft, hop)
        randomize(mw, seed * 100 + i, a.full)
        ms = build_unet(unet, unet.UNet, widths, F, T, n_fft, hop)
        ms.load_state_dict(mw.state_dict())
        ms.eval()
        torch.save({"model_state_dict": mw.state_dict(), "epoch": 22}, os.path.join(out, "%s.pth" % s))
        wave[s], spec[s] = mw, ms
    x = make_mix(seed, 2, L, sr)
    write_wav_f32(os.path.join(out, "mix.wav"), x, sr)

    def larsnet_obj(models, wiener):
        ln = larsnet.LarsNet.__new__(larsnet.LarsNet)
        torch.nn.Module.__init__(ln)
        ln.models, ln.device, ln.stems = models, "cpu", list(STEMS)
        ln.wiener_filter, ln.wiener_exponent, ln.return_stft = wiener, alpha, False
        ln.utils = unet.UNetUtils(device="cpu", n_fft=n_fft, hop_length=hop)
        ln.sr = sr
        return ln

    # shorter tracks with the same weights: mix_N.wav, ref_N.safetensors (N samples)
    for n, keys in extra:
        xe = make_mix(seed + n, 2, n, sr)
        write_wav_f32(os.path.join(out, "mix_%d.wav" % n), xe, sr)
        xs = torch.from_numpy(xe)
        arrays = [("stems", larsnet_obj(wave, False).separate(xs))]
        if "wiener" in keys:
            arrays.append(("wiener", larsnet_obj(spec, True).separate_wiener(xs)))
        tensors = [(k, "F32", [5, 2, n], np.ascontiguousarray(np.stack([v[s].numpy() for s in STEMS])
                                                             .astype("<f4")).tobytes()) for k, v in arrays]
        torchckpt.write_safetensors(os.path.join(out, "ref_%d.safetensors" % n), tensors,
                                    {"sources": ",".join(STEMS), "wiener_alpha": repr(alpha)})
    xt = torch.from_numpy(x)
    plain = larsnet_obj(wave, False).separate(xt)
    wien = larsnet_obj(spec, True).separate_wiener(xt)
    stems = np.stack([plain[s].numpy() for s in STEMS])
    wstems = np.stack([wien[s].numpy() for s in STEMS])
    for s in STEMS:
        m = spec[s]
        mag, _ = m.utils.batch_stft(xt.unsqueeze(0))
        _, mask = m(mag)
        print("%s: mask mean %.3f std %.3f, stem rms %.4f" % (
            s, mask.mean().item(), mask.std().item(), plain[s].pow(2).mean().sqrt().item()), file=sys.stderr)
    tensors = [(k, "F32", list(v.shape), np.ascontiguousarray(v.astype("<f4")).tobytes())
               for k, v in (("stems", stems), ("wiener", wstems))]
    torchckpt.write_safetensors(os.path.join(out, "ref.safetensors"), tensors,
                                {"sources": ",".join(STEMS), "wiener_alpha": repr(alpha)})
    print("wrote %s: widths %s, n_fft %d, hop %d, F %d, T %d, %d samples" % (
        out, widths, n_fft, hop, F, T, L), file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ref", default=os.path.join(ROOT, ".ref", "larsnet"))
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures", "larsnet"))
    ap.add_argument("--full", metavar="OUTDIR")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--widths", default="2,4,4,8,8,8")
    ap.add_argument("--n-fft", type=int, default=128)
    ap.add_argument("--hop", type=int, default=32)
    ap.add_argument("-F", type=int, default=64)
    ap.add_argument("-T", type=int, default=64)
    ap.add_argument("--samples", type=int, default=6999)
    ap.add_argument("--alpha", type=float, default=2.0)
    a = ap.parse_args()
    if a.full:
        make_case(a, os.path.join(a.full, "full"), (16, 32, 64, 128, 256, 512), 4096, 1024, 2048, 512,
                  int(a.seconds * 44100) + 123, a.alpha, 7)
    else:
        widths = tuple(int(w) for w in a.widths.split(","))
        # 100 samples: one block of 4 frames (the reflect padding nearly the whole track);
        # 6112 = 191 hops: 192 frames, three full blocks (the last block not short)
        make_case(a, os.path.join(a.out, "small"), widths, a.n_fft, a.hop, a.F, a.T, a.samples, a.alpha, 3,
                  extra=((100, ("stems", "wiener")), (6112, ("stems",))))


if __name__ == "__main__":
    main()
