#!/usr/bin/env python3
"""make-dfn-fixtures.py - reference outputs of DeepFilterNet3 (Rikorose/DeepFilterNet:
df/deepfilternet3.py, df/modules.py, df/multiframe.py, df/enhance.py) with random
weights, for stemsplit's tests.

Needs torch and numpy, and DeepFilterNet's python package (the folder holding df/)
under --ref (default .ref/dfn/DeepFilterNet).  Its compiled extension libdf is
replaced by the numpy port in dfnref.py (each function there names the Rust
function of libDF it mirrors); the network, the config handling, the checkpoint
loading (df/checkpoint.py) and the enhancement (df/enhance.py enhance()) are the
reference's own code.

  make-dfn-fixtures.py [--ref DIR] [--out tests/fixtures/deepfilternet] [--print-state]
      the small case: OUT/small/{config.ini, checkpoints/model_120.ckpt.best,
      mix.wav, ref.safetensors} (5555 samples, 59 frames) and, with the same
      weights, mix_16000.wav / ref_16000.safetensors (16000 samples: stems only)
  make-dfn-fixtures.py --full OUTDIR [--seconds 10]
      the released DeepFilterNet3 configuration (RELEASED_INI below) with random
      weights: OUTDIR/full/ as above (large: not committed).
  make-dfn-fixtures.py --dev OUTDIR [--channels 2] [--dev-seconds 0.25] [--seed 1]
      the C model's development fixture (tests/fixtures/deepfilternet-dev):
      OUTDIR/model.safetensors written directly (no converter) and
      OUTDIR/ref.safetensors with mix, speech [C, L], lsnr [C, T], erb_mask;
      several channels at once (make_dev()).

Each case is a model folder laid out as the release (config.ini and
checkpoints/model_120.ckpt.best = torch.save(model.state_dict()), which
df/checkpoint.py read_cp loads).  The model is built by the reference's init_df()
from that config.ini with random weights (BatchNorm with non-trivial running
statistics), saved, and loaded back through init_df(epoch="best"); enhance() runs
on the mono 48 kHz mix.wav.  ref.safetensors holds (F32; docs/deepfilternet-format.md):
  stems [2, 1, L]                                   speech, noise (compare-stems.py)
  speech [1, L], noise [1, L] = mix - speech        the stems
  spec [1, 1, T, F, 2], feat_erb [1, 1, T, E], feat_spec [1, 1, T, nb_df, 2]
                                                    the model's inputs (df_features)
  e0 e1 e2 e3 emb c0 lsnr                           Encoder outputs
  m [1, 1, T, E]                                    ERB gains (ErbDecoder)
  df_coefs [1, df_order, T, nb_df, 2]               after DfOutputReshapeMF
  spec_m [1, 1, T, F, 2]                            spec times the ERB gains (Mask)
  enhanced [1, 1, T, F, 2]                          the model's output spectrum
"""
import argparse
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import torchckpt  # noqa: E402
import dfnref  # noqa: E402

# The released model's config.ini (in DeepFilterNet3.zip) is not available here.
# A copy published on Hugging Face (benjamin-paine/taproot-common,
# speech-enhancement-deep-filter-net-3-config.ini; its lines up to df_gru_skip
# seen) gives the [df] section below and conv_lookahead, conv_ch, conv_depthwise,
# emb_hidden_dim, emb_num_layers, enc_linear_groups, linear_groups,
# conv_dec_mode, convt_depthwise (False: not read by deepfilternet3.py, which
# always builds separable convolutions), mask_pf, df_hidden_dim, df_num_layers,
# dfop_method, group_shuffle, conv_kernel, df_gru_skip.  The remaining keys are
# the defaults of deepfilternet3.py ModelParams and config.py DfParams, except
# df_pathway_kernel_size_t = 5 and conv_kernel_inp = 3,3 (DeepFilterNet2's
# released config.ini has both; DF3 paper: 2.13 M parameters, which these values
# give: 2,135,484 without the filter banks).  The converter and the C model read
# every value from the config.ini of the model they are given, so a mismatch here
# only changes the random-weight "full" fixture, not results on the released
# weights.
RELEASED_INI = """\
[train]
model = deepfilternet3

[df]
sr = 48000
fft_size = 960
hop_size = 480
nb_erb = 32
nb_df = 96
norm_tau = 1
lsnr_max = 35
lsnr_min = -15
min_nb_erb_freqs = 2
df_order = 5
df_lookahead = 2
pad_mode = output

[deepfilternet]
conv_lookahead = 2
conv_ch = 64
conv_depthwise = True
conv_dec_mode = transposed
dfop_method = df
group_shuffle = False
convt_depthwise = False
conv_kernel = 1,3
convt_kernel = 1,3
conv_kernel_inp = 3,3
emb_hidden_dim = 256
emb_num_layers = 3
emb_gru_skip_enc = none
emb_gru_skip = none
df_hidden_dim = 256
df_gru_skip = groupedlinear
df_pathway_kernel_size_t = 5
enc_concat = False
df_num_layers = 2
df_n_iter = 1
linear_groups = 16
enc_linear_groups = 32
mask_pf = False
pf_beta = 0.02
lsnr_dropout = False
"""

# The small case: fft 192 / hop 96 at 48 kHz, 16 ERB bands, 24 deep-filter bins,
# same orders and look-aheads as the release, narrow layers; two GRU layers in the
# ERB decoder and the DF decoder, grouped linears with 2 and 4 groups.
SMALL_INI = """\
[train]
model = deepfilternet3

[df]
sr = 48000
fft_size = 192
hop_size = 96
nb_erb = 16
nb_df = 24
norm_tau = 1
lsnr_max = 35
lsnr_min = -15
min_nb_erb_freqs = 2
df_order = 5
df_lookahead = 2
pad_mode = input_specf

[deepfilternet]
conv_lookahead = 2
conv_ch = 8
conv_depthwise = True
convt_depthwise = True
conv_kernel = 1,3
convt_kernel = 1,3
conv_kernel_inp = 3,3
emb_hidden_dim = 16
emb_num_layers = 3
emb_gru_skip_enc = none
emb_gru_skip = none
df_hidden_dim = 16
df_gru_skip = groupedlinear
df_pathway_kernel_size_t = 5
enc_concat = False
df_num_layers = 2
df_n_iter = 1
linear_groups = 2
enc_linear_groups = 4
mask_pf = False
pf_beta = 0.02
lsnr_dropout = False
"""

CKPT = os.path.join("checkpoints", "model_120.ckpt.best")


def randomize(model, seed, gain_linear=4.0, gain_gru=3.0, gain_conv=2.0):
    """Random weights on top of the reference's initialisation: BatchNorm affine
    parameters and running statistics made non-trivial (so that folding them is
    tested); linear, GRU and convolution weights of torch's default random init
    scaled up so that the activations, gains and LSNR vary with the input instead
    of sitting at constants."""
    import torch
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                n = mod.num_features
                mod.weight.copy_(0.6 + 0.8 * torch.rand(n, generator=g))
                mod.bias.copy_(0.2 * torch.randn(n, generator=g))
                mod.running_mean.copy_(0.2 * torch.randn(n, generator=g))
                mod.running_var.copy_(0.5 + torch.rand(n, generator=g))
                mod.num_batches_tracked.fill_(1000)
            elif type(mod).__name__ == "GroupedLinearEinsum" or isinstance(mod, torch.nn.Linear):
                mod.weight.mul_(gain_linear)
            elif isinstance(mod, torch.nn.GRU):
                for name, p in mod.named_parameters():
                    p.mul_(gain_gru)
            elif isinstance(mod, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
                mod.weight.mul_(gain_conv)
    model.eval()


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


def make_mix(seed, L, sr):
    """Mono 'speech in noise': a voiced harmonic series with a gliding pitch and a
    syllable envelope, plus pink-ish noise and a hum."""
    import numpy as np
    rs = np.random.RandomState(seed)
    t = np.arange(L) / sr
    f0 = 140.0 + 30.0 * np.sin(2 * np.pi * 1.3 * t)
    ph = 2 * np.pi * np.cumsum(f0) / sr
    v = sum((0.5 / k) * np.sin(k * ph + rs.uniform(0, 6.28)) for k in range(1, 30) if k * 170 < sr / 2)
    env = np.clip(np.sin(2 * np.pi * 3.0 * t + 0.3), 0, None) ** 0.7
    w = rs.randn(L)
    pink = np.convolve(w, np.exp(-np.arange(64) / 8.0), mode="same") * 0.05
    x = 0.3 * v * env + pink + 0.02 * rs.randn(L) + 0.03 * np.sin(2 * np.pi * 50 * t)
    return (x / np.max(np.abs(x)) * 0.7).astype(np.float32)[None, :]


def capture(model):
    """Forward hooks recording the intermediate tensors of one model call."""
    rec = {}

    def pre(mod, args):
        spec, feat_erb, feat_spec = args
        rec["spec"], rec["feat_erb"], rec["feat_spec"] = (
            spec.clone(), feat_erb.clone(), feat_spec.clone())

    def enc(mod, args, out):
        for k, v in zip(("e0", "e1", "e2", "e3", "emb", "c0", "lsnr"), out):
            rec[k] = v.clone()

    def erb_dec(mod, args, out):
        rec["m"] = out.clone()

    def mask(mod, args, out):
        rec["spec_m"] = out.clone()

    def df_out(mod, args, out):
        rec["df_coefs"] = out.clone()

    def top(mod, args, out):
        rec["enhanced"] = out[0].clone()

    model.register_forward_pre_hook(pre)
    model.enc.register_forward_hook(enc)
    model.erb_dec.register_forward_hook(erb_dec)
    model.mask.register_forward_hook(mask)
    model.df_out_transform.register_forward_hook(df_out)
    model.register_forward_hook(top)
    return rec


def make_case(a, out, ini, L, seed, extra=()):
    import numpy as np
    import torch
    enh, config = dfnref.load(a.ref)
    os.makedirs(os.path.join(out, "checkpoints"), exist_ok=True)
    with open(os.path.join(out, "config.ini"), "w") as f:
        f.write(ini)
    torch.manual_seed(seed)
    model, df_state, _, _ = enh.init_df(out, log_level="none", log_file=None, epoch="none")
    randomize(model, seed)
    sd = model.state_dict()
    torch.save(sd, os.path.join(out, CKPT))
    # load it back as a released model is loaded
    dfnref.LOGGER.warnings.clear()
    torch.manual_seed(seed + 1)
    model, df_state, _, epoch = enh.init_df(out, log_level="none", log_file=None, epoch="best")
    if dfnref.LOGGER.warnings:
        sys.exit("loading %s: %s" % (CKPT, "; ".join(dfnref.LOGGER.warnings)))
    sd2 = model.state_dict()
    assert epoch == 120 and sd.keys() == sd2.keys() and all(torch.equal(sd[k], sd2[k]) for k in sd)
    p = enh.ModelParams()
    meta = {"sources": "speech,noise", "samplerate": str(df_state.sr()),
            "norm_alpha": repr(enh.get_norm_alpha(False)),
            "erb_widths": ",".join(str(int(w)) for w in df_state.erb_widths()),
            "fft_size": str(p.fft_size), "hop_size": str(p.hop_size)}

    def run(x, suffix, rec):
        write_wav_f32(os.path.join(out, "mix%s.wav" % suffix), x, df_state.sr())
        speech = enh.enhance(model, df_state, torch.from_numpy(x))
        noise = torch.from_numpy(x) - speech
        arrays = [("stems", torch.stack([speech, noise]))]
        if rec is not None:
            arrays += [("speech", speech), ("noise", noise)] + sorted(rec.items())
        tensors = [(k, "F32", list(v.shape),
                    np.ascontiguousarray(v.detach().float().numpy().astype("<f4")).tobytes())
                   for k, v in arrays]
        torchckpt.write_safetensors(os.path.join(out, "ref%s.safetensors" % suffix), tensors, meta)
        return speech

    # longer mixes with the same weights: stems only
    for n in extra:
        run(make_mix(seed + n, n, df_state.sr()), "_%d" % n, None)
    x = make_mix(seed, L, df_state.sr())
    rec = capture(model)
    speech = run(x, "", rec)
    m = rec["m"]
    print("%s: %d samples, %d frames, %d parameters; mask mean %.3f std %.3f, lsnr %.1f..%.1f, "
          "df coefs std %.3f, speech rms %.4f of mix %.4f" % (
              out, L, rec["spec"].shape[2], sum(v.numel() for k, v in sd.items()
                                                 if "running" not in k and "num_batches" not in k),
              m.mean().item(), m.std().item(), rec["lsnr"].min().item(), rec["lsnr"].max().item(),
              rec["df_coefs"].std().item(), speech.pow(2).mean().sqrt().item(),
              float(np.sqrt((x ** 2).mean()))), file=sys.stderr)
    if a.print_state:
        for k, v in sd.items():
            print("%s %s" % (k, list(v.shape)))


# --dev: the C model's own development fixture (tests/fixtures/deepfilternet-dev)
DEV = dict(sr=48000, fft_size=192, hop_size=96, nb_erb=16, nb_df=24, df_order=5, df_lookahead=2,
           conv_lookahead=2, conv_ch=8, emb_hidden_dim=32, emb_num_layers=3, df_hidden_dim=32,
           df_num_layers=2, df_pathway_kernel_size_t=5, enc_linear_groups=4, linear_groups=4,
           df_gru_skip="groupedlinear", lsnr_max=35, lsnr_min=-15, norm_tau=1.0)


def write_st(path, tensors, meta):
    """a safetensors file of F32 tensors [(name, array)] and string metadata"""
    import json
    import numpy as np
    header = {"__metadata__": meta} if meta else {}
    off, blobs = 0, []
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


def make_dev(a, out):
    """The development fixture: DEV's configuration built by DfNet itself (torch's
    default initialisation, seed --seed, BatchNorm statistics and 1-d weights
    randomised), a C-channel mix of tones and noise (--channels, --dev-seconds),
    and enhance()'s steps (n_fft zeros of padding, libDF's features through
    dfnref's port, the network, synthesis, the delay n_fft - hop removed) on all
    channels at once as a batch.  OUT/model.safetensors: the state dict under its
    own names with the dfn.* / stemsplit.* metadata the C model reads;
    OUT/ref.safetensors: mix [C, L], speech [C, L], lsnr [C, T], erb_mask [C, T, E]."""
    import numpy as np
    import torch
    cfg = DEV
    _, config = dfnref.load(a.ref)
    os.makedirs(out, exist_ok=True)
    ini = os.path.join(out, "config.ini")
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
    config.load(ini, config_must_exist=True, allow_defaults=True, allow_reload=True)
    import df.deepfilternet3 as D
    from df.modules import erb_fb
    from df.utils import get_norm_alpha
    torch.manual_seed(a.seed)
    st = dfnref.DF(cfg["sr"], cfg["fft_size"], cfg["hop_size"], cfg["nb_erb"], 2)
    widths = st.erb_widths().astype(np.int64)
    model = D.DfNet(erb_fb(widths, cfg["sr"], inverse=False), erb_fb(widths, cfg["sr"], inverse=True),
                    run_df=True, train_mask=True).eval()
    g = torch.Generator().manual_seed(a.seed + 1)
    for k, v in model.state_dict().items():
        if k.endswith("running_mean"):
            v.copy_(torch.randn(v.shape, generator=g) * 0.1)
        elif k.endswith("running_var"):
            v.copy_(torch.rand(v.shape, generator=g) * 0.5 + 0.75)
        elif k.endswith("num_batches_tracked") or k.startswith("erb_fb") or k.startswith("mask."):
            continue
        elif k.endswith(".bias") or (k.endswith(".weight") and v.dim() == 1):
            v.copy_(torch.randn(v.shape, generator=g) * 0.1 + (1.0 if k.endswith("weight") else 0.0))
    n_fft, hop, C = cfg["fft_size"], cfg["hop_size"], a.channels
    rs = np.random.RandomState(a.seed)
    L = int(a.dev_seconds * cfg["sr"])
    t = np.arange(L) / cfg["sr"]
    mix = np.stack([0.3 * np.sin(2 * np.pi * (220 + 50 * c) * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
                    + 0.05 * rs.randn(L) for c in range(C)]).astype(np.float32)
    alpha = get_norm_alpha(False)
    spec = st.analysis(np.concatenate([mix, np.zeros((C, n_fft), np.float32)], axis=1))
    ef = torch.from_numpy(dfnref.erb_norm(dfnref.erb(spec, widths), alpha)).unsqueeze(1)
    sf = torch.view_as_real(torch.from_numpy(dfnref.unit_norm(spec[..., :cfg["nb_df"]], alpha))).unsqueeze(1)
    sp = torch.view_as_real(torch.from_numpy(spec)).unsqueeze(1)
    with torch.no_grad():
        enh, m, lsnr, _ = model(sp.clone(), ef, sf)
    y = st.synthesis(torch.view_as_complex(enh.squeeze(1).contiguous()).numpy())
    speech = y[:, n_fft - hop:L + n_fft - hop]
    tensors = [(k, v.detach().float().numpy()) for k, v in model.state_dict().items()
               if not (k.endswith("num_batches_tracked") or k == "erb_fb" or k.startswith("mask."))]
    meta = {"stemsplit.architecture": "deepfilternet3", "stemsplit.sources": "speech",
            "stemsplit.residual": "noise", "stemsplit.samplerate": str(cfg["sr"]), "stemsplit.channels": "1",
            "stemsplit.segment": "1", "dfn.erb_widths": ",".join(str(int(w)) for w in widths),
            "dfn.norm_alpha": repr(float(alpha)), "dfn.deepfilternet.conv_lookahead": str(cfg["conv_lookahead"])}
    for k in ("fft_size", "hop_size", "nb_erb", "nb_df", "df_order", "df_lookahead", "lsnr_max", "lsnr_min"):
        meta["dfn.df." + k] = str(cfg[k])
    write_st(os.path.join(out, "model.safetensors"), tensors, meta)
    write_st(os.path.join(out, "ref.safetensors"),
             [("mix", mix), ("speech", speech.astype(np.float32)), ("lsnr", lsnr.squeeze(-1).numpy()),
              ("erb_mask", m.squeeze(1).numpy())], {})
    print("wrote %s: %d channels, %d frames, rms speech %.4g mix %.4g" % (
        out, C, spec.shape[1], float(np.sqrt((speech ** 2).mean())), float(np.sqrt((mix ** 2).mean()))))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ref", default=os.path.join(ROOT, ".ref", "dfn", "DeepFilterNet"))
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures", "deepfilternet"))
    ap.add_argument("--full", metavar="OUTDIR")
    ap.add_argument("--dev", metavar="OUTDIR")
    ap.add_argument("--channels", type=int, default=2)
    ap.add_argument("--dev-seconds", type=float, default=0.25)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--samples", type=int, default=5555)
    ap.add_argument("--print-state", action="store_true",
                    help="print the state dict's names and shapes")
    a = ap.parse_args()
    if a.dev:
        make_dev(a, a.dev)
    elif a.full:
        make_case(a, os.path.join(a.full, "full"), RELEASED_INI, int(a.seconds * 48000) + 123, 11)
    else:
        make_case(a, os.path.join(a.out, "small"), SMALL_INI, a.samples, 5, extra=(16000,))


if __name__ == "__main__":
    main()
