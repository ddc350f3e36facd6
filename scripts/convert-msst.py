#!/usr/bin/env python3
"""convert-msst.py - convert a BS-RoFormer, Mel-Band RoFormer or MDX23C (TFC-TDF-Net
v3) checkpoint trained with Music-Source-Separation-Training (MSST) to a stemsplit
model file (.safetensors).  Python 3 standard library only: no torch, no PyYAML.

  convert-msst.py -o OUT.safetensors CONFIG.yaml CHECKPOINT
                  [--dtype keep|f32|f16|bf16] [--name NAME]

CONFIG.yaml is the MSST training/inference config the checkpoint was made with
(model:, audio:, training:, inference:).  CHECKPOINT is torch's zip format
holding the model's state dict, bare or under `state`, `state_dict` or
`model_state_dict` (a `model.` / `module.` prefix on every key is dropped).
It is read with torchckpt.py's restricted unpickler: nothing from the file is
ever called.  Every tensor is written under its state-dict name; Mel-Band
RoFormer files also get the band assignment (mel.*) computed here; MDX23C files
drop BatchNorm's num_batches_tracked counters (unused at inference).  Format and
metadata: docs/roformer-format.md, docs/mdx23c-format.md.

Exit status: 0 ok, 64 usage, 65 bad or unsupported input, 66 input missing,
73 cannot create output, 74 I/O error.
"""
import fractions
import math
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torchckpt import (EX_DATAERR, EX_NOINPUT,  # noqa: E402
                       Refuse, Checkpoint, _is_int, state_dict, read_yaml, pos_int,
                       write_safetensors, fmt_value, parser, parse_args, run_main)

VERSION = "1.0"
PROG = "convert-msst.py"

# The constructors' defaults (MSST models/bs_roformer/{bs_roformer,mel_band_roformer}.py).
# `dim` and `depth` have none.  ff_mult is not a constructor argument: the
# reference's Transformer is always built with its default 4.
DEFAULT_FREQS_PER_BANDS = (2,) * 24 + (4,) * 12 + (12,) * 8 + (24,) * 8 + (48,) * 8 + (128, 129)
COMMON_DEFAULTS = {
    "stereo": False, "num_stems": 1, "time_transformer_depth": 2, "freq_transformer_depth": 2,
    "linear_transformer_depth": 0, "dim_head": 64, "heads": 8, "stft_n_fft": 2048,
    "stft_hop_length": 512, "stft_win_length": 2048, "stft_normalized": False,
    "stft_window_fn": None, "zero_dc": True, "mlp_expansion_factor": 4,
    "skip_connection": False, "use_pope": False,
}
BS_DEFAULTS = dict(COMMON_DEFAULTS, freqs_per_bands=DEFAULT_FREQS_PER_BANDS,
                   mask_estimator_depth=2)
MEL_DEFAULTS = dict(COMMON_DEFAULTS, num_bands=60, sample_rate=44100, mask_estimator_depth=1,
                    match_input_audio_length=False)
FF_MULT = 4
INT_KEYS = ("dim", "depth", "num_stems", "time_transformer_depth", "freq_transformer_depth",
            "dim_head", "heads", "stft_n_fft", "stft_hop_length", "stft_win_length",
            "mask_estimator_depth", "mlp_expansion_factor")
BOOL_KEYS = ("stereo", "stft_normalized", "zero_dc", "skip_connection", "use_pope")
MDX23C_KEYS = ("num_subbands", "num_scales", "num_blocks_per_scale", "bottleneck_factor")
MDX23C_INT_KEYS = ("num_subbands", "num_scales", "num_blocks_per_scale", "num_channels",
                   "growth", "bottleneck_factor")
STATE_WRAPPERS = ("state_dict", "model_state_dict", "state")
STATE_PREFIXES = ("module.", "model.")


# ------------------------------------------------------------------ config

def _get(d, section, key, path, default=Refuse):
    sec = d.get(section)
    if sec is None or not isinstance(sec, dict) or key not in sec:
        if default is Refuse:
            raise Refuse("%s: %s.%s missing" % (path, section, key))
        return default
    return sec[key]


class Config:
    """The hyperparameters of one MSST config, resolved against the defaults."""

    def __init__(self, path):
        self.path = path
        y = read_yaml(path)
        model = y.get("model")
        if not isinstance(model, dict):
            raise Refuse("%s: model section missing" % path)
        self.y, self.model = y, model
        self.arch = self.architecture()
        self.p = self.resolve()
        self.audio()

    def architecture(self):
        m = self.model
        if any(k in m for k in MDX23C_KEYS):
            return "mdx23c"
        if "num_bands" in m and "freqs_per_bands" in m:
            raise Refuse("%s: model has both num_bands (Mel-Band) and freqs_per_bands (BS)"
                         % self.path)
        if "num_bands" in m:
            return "mel_band_roformer"
        if "freqs_per_bands" in m:
            return "bs_roformer"
        raise Refuse("%s: model.freqs_per_bands (BS-RoFormer) or model.num_bands (Mel-Band "
                     "RoFormer) missing: not a RoFormer config" % self.path)

    def resolve(self):
        if self.arch == "mdx23c":
            return self.resolve_mdx23c()
        path, mel = self.path, self.arch == "mel_band_roformer"
        p = dict(MEL_DEFAULTS if mel else BS_DEFAULTS)
        for k in ("dim", "depth"):
            if k not in self.model:
                raise Refuse("%s: model.%s missing" % (path, k))
        for k, v in self.model.items():
            if k in p or k in ("dim", "depth"):
                p[k] = v
        for k in INT_KEYS:
            pos_int(p[k], "model." + k, path)
        pos_int(p["linear_transformer_depth"], "model.linear_transformer_depth", path, True)
        for k in BOOL_KEYS + (("match_input_audio_length",) if mel else ()):
            if not isinstance(p[k], bool):
                raise Refuse("%s: model.%s=%r: expected true or false" % (path, k, p[k]))
        if p["linear_transformer_depth"] > 0:
            raise Refuse("%s: model.linear_transformer_depth=%d: linear attention layers are "
                         "not supported" % (path, p["linear_transformer_depth"]))
        if p["use_pope"]:
            raise Refuse("%s: model.use_pope=true: PoPE positional embeddings are not supported"
                         % path)
        if p["stft_window_fn"] is not None:
            raise Refuse("%s: model.stft_window_fn=%r: only the default Hann window is "
                         "supported" % (path, p["stft_window_fn"]))
        if p["stft_win_length"] != p["stft_n_fft"]:
            raise Refuse("%s: model.stft_win_length=%d differs from stft_n_fft=%d: not supported"
                         % (path, p["stft_win_length"], p["stft_n_fft"]))
        if p["dim_head"] % 2:
            raise Refuse("%s: model.dim_head=%d: must be even (rotary embedding)"
                         % (path, p["dim_head"]))
        nfreq = p["stft_n_fft"] // 2 + 1
        if mel:
            pos_int(p["num_bands"], "model.num_bands", path)
            pos_int(p["sample_rate"], "model.sample_rate", path)
            self.mel = mel_bands(p["sample_rate"], p["stft_n_fft"], p["num_bands"], path)
            p["band_widths"] = self.mel[1]
        else:
            fpb = p["freqs_per_bands"]
            if not isinstance(fpb, (list, tuple)) or len(fpb) < 2 or \
                    not all(_is_int(f) and f > 0 for f in fpb):
                raise Refuse("%s: model.freqs_per_bands: expected two or more positive integers"
                             % path)
            if sum(fpb) != nfreq:
                raise Refuse("%s: model.freqs_per_bands sums to %d; stft_n_fft=%d has %d "
                             "frequencies" % (path, sum(fpb), p["stft_n_fft"], nfreq))
            p["freqs_per_bands"] = tuple(fpb)
            p["band_widths"] = list(fpb)
        return p

    def resolve_mdx23c(self):
        """MDX23C: every hyperparameter is required (TFC_TDF_net has no defaults); the
        shape constraints are those under which the reference's forward pass runs."""
        path, m, y = self.path, self.model, self.y
        p = {}
        for k in MDX23C_INT_KEYS:
            if k not in m:
                raise Refuse("%s: model.%s missing" % (path, k))
            p[k] = pos_int(m[k], "model." + k, path)
        for k in ("n_fft", "hop_length", "dim_f", "num_channels"):
            p["audio_" + k] = pos_int(_get(y, "audio", k, path), "audio." + k, path)
        sc = m.get("scale")
        if not isinstance(sc, (list, tuple)) or len(sc) != 2 or \
                not all(_is_int(v) and v > 0 for v in sc):
            raise Refuse("%s: model.scale=%r: expected two positive integers" % (path, sc))
        p["scale"] = [sc[0], sc[1]]
        norm = m.get("norm")
        if not isinstance(norm, str):
            raise Refuse("%s: model.norm=%r: expected a name" % (path, norm))
        if norm in ("BatchNorm", "InstanceNorm"):
            p["norm"] = norm
        elif "GroupNorm" in norm:                  # as the reference: GroupNorm<groups>
            g = norm.replace("GroupNorm", "")
            if not g.isdigit() or int(g) < 1:
                raise Refuse("%s: model.norm=%r: expected GroupNorm followed by a group count"
                             % (path, norm))
            p["norm"], p["groups"] = "GroupNorm%d" % int(g), int(g)
        else:                                      # the reference's nn.Identity
            p["norm"] = "Identity"
        act = m.get("act")
        if act in ("gelu", "relu"):
            p["act"] = act
        elif isinstance(act, str) and act[:3] == "elu":
            try:
                alpha = float(act[3:])
            except ValueError:
                raise Refuse("%s: model.act=%r: expected elu followed by alpha (e.g. elu1.0)"
                             % (path, act))
            if not math.isfinite(alpha):
                raise Refuse("%s: model.act=%r: alpha is not finite" % (path, act))
            p["act"] = "elu%r" % alpha
        else:
            raise Refuse("%s: model.act=%r: expected gelu, relu or eluALPHA" % (path, act))
        if p["audio_num_channels"] != 2:
            raise Refuse("%s: audio.num_channels=%d: the reference's inverse STFT handles two "
                         "channels only" % (path, p["audio_num_channels"]))
        nfreq = p["audio_n_fft"] // 2 + 1
        if p["audio_n_fft"] % 2 or p["audio_dim_f"] > nfreq:
            raise Refuse("%s: audio.dim_f=%d with n_fft=%d: need an even n_fft and dim_f <= %d"
                         % (path, p["audio_dim_f"], p["audio_n_fft"], nfreq))
        if p["audio_hop_length"] > p["audio_n_fft"]:
            raise Refuse("%s: audio.hop_length=%d exceeds n_fft=%d"
                         % (path, p["audio_hop_length"], p["audio_n_fft"]))
        k, n, bn = p["num_subbands"], p["num_scales"], p["bottleneck_factor"]
        if p["audio_dim_f"] % k:
            raise Refuse("%s: audio.dim_f=%d is not a multiple of model.num_subbands=%d"
                         % (path, p["audio_dim_f"], k))
        f = p["audio_dim_f"] // k
        for i in range(n + 1):
            if f // bn < 1:
                raise Refuse("%s: %d frequency rows at scale %d: model.bottleneck_factor=%d "
                             "leaves none" % (path, f, i, bn))
            if i < n:
                if f % p["scale"][1]:
                    raise Refuse("%s: %d frequency rows at scale %d are not a multiple of "
                                 "model.scale[1]=%d" % (path, f, i, p["scale"][1]))
                f //= p["scale"][1]
        return p

    def audio(self):
        path, y = self.path, self.y
        self.samplerate = pos_int(_get(y, "audio", "sample_rate", path),
                                   "audio.sample_rate", path)
        inf = y.get("inference") if isinstance(y.get("inference"), dict) else {}
        # as MSST's demix: inference.chunk_size wins over audio.chunk_size
        if "chunk_size" in inf:
            self.chunk_size = pos_int(inf["chunk_size"], "inference.chunk_size", path)
        else:
            self.chunk_size = pos_int(_get(y, "audio", "chunk_size", path),
                                       "audio.chunk_size", path)
        self.num_overlap = pos_int(_get(y, "inference", "num_overlap", path),
                                    "inference.num_overlap", path)
        self.batch_size = pos_int(_get(y, "inference", "batch_size", path),
                                   "inference.batch_size", path)
        self.normalize = inf.get("normalize", False)
        if not isinstance(self.normalize, bool):
            raise Refuse("%s: inference.normalize=%r: expected true or false"
                         % (path, self.normalize))
        if self.chunk_size // self.num_overlap == 0:
            raise Refuse("%s: inference.num_overlap=%d exceeds chunk_size=%d"
                         % (path, self.num_overlap, self.chunk_size))
        p = self.p
        if self.arch == "mdx23c":
            hop, s0, n = p["audio_hop_length"], p["scale"][0], p["num_scales"]
            if self.chunk_size % hop:
                raise Refuse("%s: chunk_size=%d is not a multiple of audio.hop_length=%d: the "
                             "reference's output would be shorter than its input"
                             % (path, self.chunk_size, hop))
            frames = self.chunk_size // hop + 1
            if frames % (s0 ** n):
                raise Refuse("%s: chunk_size=%d gives %d frames, not a multiple of "
                             "model.scale[0]^num_scales=%d: the reference cannot run it"
                             % (path, self.chunk_size, frames, s0 ** n))
        elif self.arch == "mel_band_roformer" and not p["match_input_audio_length"] \
                and self.chunk_size % p["stft_hop_length"]:
            raise Refuse("%s: chunk_size=%d is not a multiple of stft_hop_length=%d: the "
                         "reference's output would be shorter than its input"
                         % (path, self.chunk_size, p["stft_hop_length"]))
        tr = y.get("training") if isinstance(y.get("training"), dict) else {}
        target = tr.get("target_instrument")
        if target:                                  # MSST's prefer_target_instrument
            sources = [target]
        else:
            sources = tr.get("instruments")
            if sources is None:
                raise Refuse("%s: training.instruments missing (and no "
                             "training.target_instrument)" % path)
        if not isinstance(sources, (list, tuple)) or not sources or not all(
                isinstance(s, str) and s and "," not in s and s.strip() == s for s in sources) \
                or len(set(sources)) != len(sources):
            raise Refuse("%s: training.instruments/target_instrument %r: need distinct "
                         "non-empty names without commas" % (path, sources))
        if self.arch == "mdx23c":
            p["num_target_instruments"] = len(sources)
        elif len(sources) != p["num_stems"]:
            raise Refuse("%s: model.num_stems=%d but the config names %d output stem%s (%s)"
                         % (path, p["num_stems"], len(sources), "s"[:len(sources) != 1],
                            ",".join(sources)))
        self.sources = list(sources)


# ------------------------------------------------------------------ mel bands

def _f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def mel_bands(sr, n_fft, n_mels, path):
    """The reference's band assignment: librosa.filters.mel(sr, n_fft, n_mels) (Slaney
    scale and norm, float32), [0][0] and [-1][-1] forced to 1, then `> 0`.  The same
    double operations in the same order as numpy/librosa, rounded to float32 where
    librosa stores.  Returns (freq_indices, num_freqs_per_band, num_bands_per_freq)."""
    nf = n_fft // 2 + 1
    val = 1.0 / (n_fft * (1.0 / sr))                     # numpy.fft.rfftfreq
    fft = [k * val for k in range(nf)]
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = (min_log_hz - 0.0) / f_sp
    logstep = math.log(6.4) / 27.0

    def hz_to_mel(f):
        m = (f - 0.0) / f_sp
        if f >= min_log_hz:
            m = min_log_mel + math.log(f / min_log_hz) / logstep
        return m

    def mel_to_hz(m):
        f = 0.0 + f_sp * m
        if m >= min_log_mel:
            f = min_log_hz * math.exp(logstep * (m - min_log_mel))
        return f

    lo, hi = hz_to_mel(0.0), hz_to_mel(float(sr) / 2)
    n = n_mels + 2
    step = (hi - lo) / (n - 1)                            # numpy.linspace
    mels = [k * step + lo for k in range(n)]
    mels[-1] = hi
    mel_f = [mel_to_hz(m) for m in mels]
    fdiff = [mel_f[i + 1] - mel_f[i] for i in range(n - 1)]
    member = []
    for i in range(n_mels):
        enorm = 2.0 / (mel_f[i + 2] - mel_f[i])
        row = []
        for k in range(nf):
            lower = -(mel_f[i] - fft[k]) / fdiff[i]
            upper = (mel_f[i + 2] - fft[k]) / fdiff[i + 1]
            w = max(0.0, min(lower, upper))
            row.append(_f32(_f32(w) * enorm) > 0)
        member.append(row)
    member[0][0] = True
    member[-1][-1] = True
    idx = [k for i in range(n_mels) for k in range(nf) if member[i][k]]
    per_band = [sum(row) for row in member]
    per_freq = [sum(member[i][k] for i in range(n_mels)) for k in range(nf)]
    if not all(per_freq):
        raise Refuse("%s: model.num_bands=%d with stft_n_fft=%d leaves frequency bin %d in no "
                     "band" % (path, n_mels, n_fft, per_freq.index(0)))
    if not all(per_band):
        raise Refuse("%s: model.num_bands=%d with stft_n_fft=%d leaves band %d empty"
                     % (path, n_mels, n_fft, per_band.index(0)))
    return idx, per_band, per_freq


# ------------------------------------------------------------------ state dict

def expected_tensors(cfg):
    """name -> shape of every tensor the reference model has (rotary freqs optional)."""
    p, mel = cfg.p, cfg.arch == "mel_band_roformer"
    dim, h, dh = p["dim"], p["heads"], p["dim_head"]
    C = 2 if p["stereo"] else 1
    want, optional = {}, {}
    for i in range(p["depth"]):
        for t, d in ((0, p["time_transformer_depth"]), (1, p["freq_transformer_depth"])):
            base = "layers.%d.%d." % (i, t)
            for j in range(d):
                a = base + "layers.%d.0." % j
                want[a + "norm.gamma"] = [dim]
                want[a + "to_qkv.weight"] = [3 * h * dh, dim]
                want[a + "to_gates.weight"] = [h, dim]
                want[a + "to_gates.bias"] = [h]
                want[a + "to_out.0.weight"] = [dim, h * dh]
                optional[a + "rotary_embed.freqs"] = [dh // 2]
                f = base + "layers.%d.1.net." % j
                want[f + "0.gamma"] = [dim]
                want[f + "1.weight"] = [dim * FF_MULT, dim]
                want[f + "1.bias"] = [dim * FF_MULT]
                want[f + "4.weight"] = [dim, dim * FF_MULT]
                want[f + "4.bias"] = [dim]
            if mel:
                want[base + "norm.gamma"] = [dim]
    if not mel:
        want["final_norm.gamma"] = [dim]
    hidden = dim * p["mlp_expansion_factor"]
    nhidden = p["mask_estimator_depth"] if mel else p["mask_estimator_depth"] - 1
    for b, f in enumerate(p["band_widths"]):
        din = 2 * f * C
        want["band_split.to_features.%d.0.gamma" % b] = [din]
        want["band_split.to_features.%d.1.weight" % b] = [dim, din]
        want["band_split.to_features.%d.1.bias" % b] = [dim]
        dims = [dim] + [hidden] * nhidden + [2 * din]
        for s in range(p["num_stems"]):
            for k in range(len(dims) - 1):
                n = "mask_estimators.%d.to_freqs.%d.0.%d." % (s, b, 2 * k)
                want[n + "weight"] = [dims[k + 1], dims[k]]
                want[n + "bias"] = [dims[k + 1]]
    return want, optional


def mdx23c_tensors(cfg):
    """name -> shape of every tensor of the reference TFC_TDF_net (the module names of
    MSST's models/mdx23c_tfc_tdf_v3.py), and the optional BatchNorm counters."""
    p = cfg.p
    want, optional = {}, {}
    norm = p["norm"]

    def nrm(pre, c):
        if norm == "Identity":
            return
        want[pre + "weight"] = [c]
        want[pre + "bias"] = [c]
        if norm == "BatchNorm":
            want[pre + "running_mean"] = [c]
            want[pre + "running_var"] = [c]
            optional[pre + "num_batches_tracked"] = []

    def tfc_tdf(pre, in_c, c, f):
        for i in range(p["num_blocks_per_scale"]):
            b = "%sblocks.%d." % (pre, i)
            nrm(b + "tfc1.0.", in_c)
            want[b + "tfc1.2.weight"] = [c, in_c, 3, 3]
            nrm(b + "tdf.0.", c)
            want[b + "tdf.2.weight"] = [f // p["bottleneck_factor"], f]
            nrm(b + "tdf.3.", c)
            want[b + "tdf.5.weight"] = [f, f // p["bottleneck_factor"]]
            nrm(b + "tfc2.0.", c)
            want[b + "tfc2.2.weight"] = [c, c, 3, 3]
            want[b + "shortcut.weight"] = [c, in_c, 1, 1]
            in_c = c

    k, g, s0, s1 = p["num_subbands"], p["growth"], p["scale"][0], p["scale"][1]
    dim_c = k * p["audio_num_channels"] * 2
    c, f = p["num_channels"], p["audio_dim_f"] // k
    want["first_conv.weight"] = [c, dim_c, 1, 1]
    for i in range(p["num_scales"]):
        pre = "encoder_blocks.%d." % i
        tfc_tdf(pre + "tfc_tdf.", c, c, f)
        nrm(pre + "downscale.conv.0.", c)
        want[pre + "downscale.conv.2.weight"] = [c + g, c, s0, s1]
        f //= s1
        c += g
    tfc_tdf("bottleneck_block.", c, c, f)
    for i in range(p["num_scales"]):
        pre = "decoder_blocks.%d." % i
        nrm(pre + "upscale.conv.0.", c)
        want[pre + "upscale.conv.2.weight"] = [c, c - g, s0, s1]
        f *= s1
        c -= g
        tfc_tdf(pre + "tfc_tdf.", 2 * c, c, f)
    want["final_conv.0.weight"] = [c, c + dim_c, 1, 1]
    want["final_conv.2.weight"] = [p["num_target_instruments"] * dim_c, c, 1, 1]
    return want, optional


def load_state(path):
    ck = Checkpoint(path)
    return ck, state_dict(ck, path, STATE_WRAPPERS, STATE_PREFIXES)


def check_state(cfg, ckpath, state):
    arch = cfg.arch
    if arch == "mdx23c":
        want, optional = mdx23c_tensors(cfg)
        if "first_conv.weight" not in state:
            raise Refuse("%s: no first_conv.weight: not an MDX23C checkpoint" % ckpath)
    else:
        want, optional = expected_tensors(cfg)
    if arch == "mel_band_roformer" and "final_norm.gamma" in state:
        raise Refuse("%s: has final_norm.gamma, a BS-RoFormer tensor, but %s is a Mel-Band "
                     "RoFormer config" % (ckpath, cfg.path))
    if arch == "bs_roformer" and "layers.0.0.norm.gamma" in state:
        raise Refuse("%s: has layers.0.0.norm.gamma, a Mel-Band RoFormer tensor, but %s is a "
                     "BS-RoFormer config" % (ckpath, cfg.path))
    if arch != "mdx23c" and not any(k.startswith("band_split.") for k in state):
        raise Refuse("%s: no band_split tensors: not a RoFormer checkpoint" % ckpath)
    for name, t in state.items():
        if name in want:
            continue
        if name not in optional:
            raise Refuse("%s: unexpected tensor %s for this %s config" % (ckpath, name, arch))
        if list(t.size) != optional[name]:
            raise Refuse("%s: tensor %s is %s; the config %s implies %s"
                         % (ckpath, name, list(t.size), cfg.path, optional[name]))
    for name, shape in want.items():
        t = state.get(name)
        if t is None:
            raise Refuse("%s: tensor %s missing (the config %s implies it)"
                         % (ckpath, name, cfg.path))
        if list(t.size) != shape:
            raise Refuse("%s: tensor %s is %s; the config %s implies %s"
                         % (ckpath, name, list(t.size), cfg.path, shape))


# ------------------------------------------------------------------ main

def metadata(cfg, name):
    p, mel, mdx = cfg.p, cfg.arch == "mel_band_roformer", cfg.arch == "mdx23c"
    meta = {
        "stemsplit.architecture": cfg.arch,
        "stemsplit.sources": ",".join(cfg.sources),
        "stemsplit.samplerate": str(cfg.samplerate),
        "stemsplit.channels": str(p["audio_num_channels"]) if mdx else
                              "2" if p["stereo"] else "1",
        "stemsplit.segment": fmt_value(fractions.Fraction(cfg.chunk_size, cfg.samplerate)),
        "stemsplit.converter": "%s %s" % (PROG, VERSION),
        "msst.chunk_size": str(cfg.chunk_size),
        "msst.num_overlap": str(cfg.num_overlap),
        "msst.normalize": fmt_value(cfg.normalize),
        "msst.batch_size": str(cfg.batch_size),
    }
    if len(cfg.sources) == 1 and cfg.sources[0] != "instrumental":
        meta["stemsplit.residual"] = "instrumental"
    if name is not None:
        meta["stemsplit.name"] = name
    if mdx:
        for k in ("n_fft", "hop_length", "dim_f"):
            meta["mdx23c." + k] = str(p["audio_" + k])
        for k in MDX23C_INT_KEYS + ("scale", "norm", "act", "num_target_instruments"):
            meta["mdx23c." + k] = fmt_value(p[k])
        return meta
    meta["roformer.ff_mult"] = str(FF_MULT)
    keys = ["dim", "depth", "time_transformer_depth", "freq_transformer_depth", "dim_head",
            "heads", "num_stems", "stereo", "stft_n_fft", "stft_hop_length", "stft_win_length",
            "stft_normalized", "zero_dc", "mask_estimator_depth", "mlp_expansion_factor",
            "skip_connection"]
    keys += ["num_bands", "sample_rate"] if mel else ["freqs_per_bands"]
    for k in keys:
        meta["roformer." + k] = fmt_value(p[k])
    return meta


def run(a):
    cfg = Config(a.config)
    ck, state = load_state(a.checkpoint)
    check_state(cfg, a.checkpoint, state)
    tensors = []
    for name, t in state.items():
        if cfg.arch == "mdx23c" and name.endswith(".num_batches_tracked"):
            continue                                # a training counter
        try:
            dt, shp, b = ck.tensor_as(t, name, a.dtype)
        except Refuse as e:
            raise Refuse("%s: %s" % (a.checkpoint, e), e.code)
        tensors.append((name, dt, shp, b))
    if cfg.arch == "mel_band_roformer":
        for name, vals in zip(("mel.freq_indices", "mel.num_freqs_per_band",
                               "mel.num_bands_per_freq"), cfg.mel):
            tensors.append((name, "F32", [len(vals)], struct.pack("<%df" % len(vals), *vals)))
    meta = metadata(cfg, a.name)
    write_safetensors(a.output, tensors, meta)
    print("%s: wrote %s: %s, %d tensors, %.1f MB, sources %s%s, segment %s s" % (
        PROG, a.output, cfg.arch, len(tensors), sum(len(t[3]) for t in tensors) / 1e6,
        meta["stemsplit.sources"],
        " (+ residual instrumental)" if "stemsplit.residual" in meta else "",
        meta["stemsplit.segment"]), file=sys.stderr)


def main(argv=None):
    ap = parser(PROG, __doc__, "Details: docs/roformer-format.md")
    ap.add_argument("config", metavar="CONFIG.yaml", help="the MSST config of the checkpoint")
    ap.add_argument("checkpoint", metavar="CHECKPOINT", help="the checkpoint (.ckpt/.pth)")
    a = parse_args(ap, argv, VERSION)

    def message(e):             # a refusal names the file it is about
        msg = str(e)
        if e.code in (EX_NOINPUT, EX_DATAERR) and not (msg.startswith(a.checkpoint) or
                                                       msg.startswith(a.config)):
            msg = "%s: %s" % (a.checkpoint, msg)
        return msg
    return run_main(PROG, run, a, message)


if __name__ == "__main__":
    sys.exit(main())
