#!/usr/bin/env python3
"""convert-deepfilternet.py - convert a DeepFilterNet3 model (Rikorose/DeepFilterNet:
config.ini + checkpoints/model_<epoch>.ckpt.best) to a stemsplit model file
(.safetensors).  Python 3 standard library only.

  convert-deepfilternet.py -o OUT.safetensors MODEL [--dtype keep|f32|f16|bf16] [--name NAME]

MODEL is the model folder, or a .zip / .tar.gz / .tgz archive of it (as
DeepFilterNet3.zip is released; the folder may sit one level down in the
archive).  The checkpoint is chosen as df/checkpoint.py read_cp(epoch="best")
does: model*.ckpt.best, else model*.ckpt, the highest epoch (the number after
the last `_` of the name).  It is read with torchckpt.py's restricted unpickler:
nothing from the file is ever called.  Its keys are renamed `clc` -> `df` and
`*.h0` / `*erb_comp*` keys are skipped, as read_cp does; num_batches_tracked is
dropped.  Every other tensor is written verbatim under its state-dict name
(BatchNorm not folded) after its name and shape have been checked against the
network that config.ini describes (df/deepfilternet3.py).

Metadata: stemsplit.architecture=deepfilternet3, stemsplit.sources=speech,
stemsplit.residual=noise (made by the pipeline: mixture - speech), stemsplit.segment=1, stemsplit.samplerate, stemsplit.channels=1, every key
of config.ini as dfn.<section>.<key> (the network's hyperparameters cast as the
reference casts them, with its defaults for keys missing), dfn.erb_widths and
dfn.norm_alpha (docs/deepfilternet-format.md).

Exit status: 0 ok, 64 usage, 65 bad or unsupported input, 66 input missing,
73 cannot create output, 74 I/O error.
"""
import configparser
import math
import os
import re
import shutil
import struct
import sys
import tarfile
import tempfile
import zipfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torchckpt import (EX_NOINPUT,  # noqa: E402
                       Refuse, Checkpoint, TensorRef, numel, to_f32,
                       write_safetensors, parser, parse_args, run_main)

VERSION = "1.0"
PROG = "convert-deepfilternet.py"
MAX_MEMBER = 1 << 30          # largest archive member read (bytes)
BN = ("weight", "bias", "running_mean", "running_var")

# (section, key, cast, default): the hyperparameters df/deepfilternet3.py reads
# (config.py DfParams in [df], deepfilternet3.py ModelParams in [deepfilternet]).
PARAMS = [
    ("df", "sr", int, 48000), ("df", "fft_size", int, 960), ("df", "hop_size", int, 480),
    ("df", "nb_erb", int, 32), ("df", "nb_df", int, 96), ("df", "norm_tau", float, 1.0),
    ("df", "lsnr_max", int, 35), ("df", "lsnr_min", int, -15),
    ("df", "min_nb_erb_freqs", int, 2), ("df", "df_order", int, 5),
    ("df", "df_lookahead", int, 0), ("df", "pad_mode", str, "input"),
    ("deepfilternet", "conv_lookahead", int, 0), ("deepfilternet", "conv_ch", int, 16),
    ("deepfilternet", "conv_depthwise", bool, True), ("deepfilternet", "convt_depthwise", bool, True),
    ("deepfilternet", "conv_kernel", "csv", (1, 3)), ("deepfilternet", "convt_kernel", "csv", (1, 3)),
    ("deepfilternet", "conv_kernel_inp", "csv", (3, 3)),
    ("deepfilternet", "emb_hidden_dim", int, 256), ("deepfilternet", "emb_num_layers", int, 2),
    ("deepfilternet", "emb_gru_skip_enc", str, "none"), ("deepfilternet", "emb_gru_skip", str, "none"),
    ("deepfilternet", "df_hidden_dim", int, 256), ("deepfilternet", "df_gru_skip", str, "none"),
    ("deepfilternet", "df_pathway_kernel_size_t", int, 1),
    ("deepfilternet", "enc_concat", bool, False), ("deepfilternet", "df_num_layers", int, 3),
    ("deepfilternet", "df_n_iter", int, 1), ("deepfilternet", "linear_groups", int, 1),
    ("deepfilternet", "enc_linear_groups", int, 16), ("deepfilternet", "mask_pf", bool, False),
    ("deepfilternet", "pf_beta", float, 0.02), ("deepfilternet", "lsnr_dropout", bool, False),
]


# ------------------------------------------------------------------ input

class Model:
    """The model's config.ini text and checkpoint path (a temporary copy for archives)."""

    def __init__(self, path, tmp):
        self.path = path
        if os.path.isdir(path):
            self._from_dir(path)
        elif not os.path.exists(path):
            raise Refuse("%s: no such file or directory" % path, EX_NOINPUT)
        elif zipfile.is_zipfile(path):
            self._from_zip(path, tmp)
        elif re.search(r"\.(tar\.gz|tgz|tar)$", path) and self._is_tar(path):
            self._from_tar(path, tmp)
        else:
            raise Refuse("%s: not a model folder, .zip or .tar.gz archive" % path)

    @staticmethod
    def _is_tar(path):
        try:
            return tarfile.is_tarfile(path)
        except OSError as e:
            raise Refuse("%s: cannot read: %s" % (path, e.strerror), EX_NOINPUT)

    def _pick(self, names):
        """names: member paths ('/'-separated).  -> (config name, checkpoint name)."""
        cfgs = [n for n in names if n.rsplit("/", 1)[-1] == "config.ini" and n.count("/") <= 1]
        if not cfgs:
            raise Refuse("%s: no config.ini (at the top or one folder down)" % self.path)
        if len(cfgs) > 1:
            raise Refuse("%s: more than one config.ini (%s)" % (self.path, ", ".join(sorted(cfgs))))
        base = cfgs[0][:-len("config.ini")]
        cks = [n for n in names if n.startswith(base + "checkpoints/")
               and "/" not in n[len(base + "checkpoints/"):]]
        for pat in (r"^model.*\.ckpt\.best$", r"^model.*\.ckpt(\.best)?$"):
            cand = [n for n in cks if re.match(pat, n.rsplit("/", 1)[-1])]
            if cand:
                break
        else:
            raise Refuse("%s: no checkpoint (%scheckpoints/model_<epoch>.ckpt.best)" % (self.path, base))

        def epoch(n):
            try:
                return int(n.rsplit("/", 1)[-1].split(".")[0].split("_")[-1])
            except ValueError:
                raise Refuse("%s: checkpoint name %s has no epoch number (model_<epoch>.ckpt.best)"
                             % (self.path, n))
        best = max(cand, key=epoch)
        self.epoch = epoch(best)
        return cfgs[0], best

    def _from_dir(self, path):
        names = []
        if os.path.isfile(os.path.join(path, "config.ini")):
            names.append("config.ini")
        ckdir = os.path.join(path, "checkpoints")
        if os.path.isdir(ckdir):
            names += ["checkpoints/" + n for n in os.listdir(ckdir)
                      if os.path.isfile(os.path.join(ckdir, n))]
        cfg, ck = self._pick(names)
        self.ckpt = os.path.join(path, ck)
        self.ckpt_name = ck
        self.config = self._text(open_file(os.path.join(path, cfg)), cfg)

    def _text(self, data, name):
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise Refuse("%s: %s is not UTF-8 text" % (self.path, name))

    def _from_zip(self, path, tmp):
        try:
            z = zipfile.ZipFile(path)
            infos = {i.filename.rstrip("/"): i for i in z.infolist() if not i.is_dir()}
            cfg, ck = self._pick(list(infos))
            for n in (cfg, ck):
                if infos[n].file_size > MAX_MEMBER:
                    raise Refuse("%s: %s is implausibly large (%d bytes)" % (path, n, infos[n].file_size))
            self.config = self._text(z.read(cfg), cfg)
            self.ckpt = os.path.join(tmp, "model.ckpt")
            with z.open(ck) as src, open(self.ckpt, "wb") as dst:
                shutil.copyfileobj(src, dst)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, RuntimeError) as e:
            raise Refuse("%s: corrupt zip archive: %s" % (path, e))
        self.ckpt_name = ck

    def _from_tar(self, path, tmp):
        try:
            with tarfile.open(path) as t:
                members = {}
                for m in t.getmembers():
                    if m.isfile():
                        members[m.name[2:] if m.name.startswith("./") else m.name] = m
                cfg, ck = self._pick(list(members))
                for n in (cfg, ck):
                    if members[n].size > MAX_MEMBER:
                        raise Refuse("%s: %s is implausibly large (%d bytes)" % (path, n, members[n].size))
                self.config = self._text(t.extractfile(members[cfg]).read(), cfg)
                self.ckpt = os.path.join(tmp, "model.ckpt")
                with t.extractfile(members[ck]) as src, open(self.ckpt, "wb") as dst:
                    shutil.copyfileobj(src, dst)
        except (tarfile.TarError, EOFError, OSError, zlib_error()) as e:
            raise Refuse("%s: corrupt tar archive: %s" % (path, e))
        self.ckpt_name = ck


def zlib_error():
    import zlib
    return zlib.error


def open_file(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise Refuse("%s: cannot read: %s" % (path, e.strerror), EX_NOINPUT)


# ------------------------------------------------------------------ config

def cast_bool(v):
    """config.py Config.cast for bool."""
    s = str(v).lower()
    if s in ("true", "yes", "y", "on", "1"):
        return True
    if s in ("false", "no", "n", "off", "0"):
        return False
    raise ValueError("not a boolean")


def fmt(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, (tuple, list)):
        return ",".join(str(x) for x in v)
    return str(v)


class Config:
    def __init__(self, text, where):
        self.where = where
        cp = configparser.ConfigParser()          # as config.py (option names lower-cased)
        try:
            cp.read_string(text, source=where)
        except configparser.Error as e:
            raise Refuse("%s: %s" % (where, str(e).splitlines()[0]))
        # config.py _fix_clc / _fix_df: old names
        if not cp.has_section("df") and cp.has_section("clc"):
            cp["df"] = cp["clc"]
            cp.remove_section("clc")
        for sec in cp.sections():
            for k in list(cp[sec].keys()):
                if "clc" in k:
                    cp.set(sec, k.replace("clc", "df"), cp.get(sec, k, raw=True))
                    cp.remove_option(sec, k)
        if cp.has_section("deepfilternet") and cp.has_section("df"):
            for k in ("df_order", "df_lookahead"):
                if cp.has_option("deepfilternet", k):
                    cp.set("df", k, cp.get("deepfilternet", k, raw=True))
                    cp.remove_option("deepfilternet", k)
        self.raw = {}
        for sec in cp.sections():
            for k in cp[sec]:
                self.raw["%s.%s" % (sec.lower(), k)] = cp.get(sec, k, raw=True)
        model = cp.get("train", "model", fallback="deepfilternet3", raw=True)
        if model != "deepfilternet3":
            raise Refuse("%s: train.model = %s: only deepfilternet3 is supported" % (where, model))
        self.p = {}
        for sec, key, cast, default in PARAMS:
            if cp.has_option(sec, key):
                s = cp.get(sec, key, raw=True).strip()
                try:
                    if cast is bool:
                        v = cast_bool(s)
                    elif cast == "csv":
                        v = tuple(int(x.strip()) for x in s.split(","))
                        if len(v) != 2 or min(v) < 1:
                            raise ValueError("expected two positive integers")
                    else:
                        v = cast(s)
                except ValueError as e:
                    raise Refuse("%s: %s.%s = %r: %s" % (where, sec, key, s, e))
            else:
                v = default
            self.p[key] = v
        self.check()

    def check(self):
        p, w = self.p, self.where
        for k in ("sr", "fft_size", "hop_size", "nb_erb", "nb_df", "min_nb_erb_freqs", "df_order",
                  "conv_ch", "emb_hidden_dim", "emb_num_layers", "df_hidden_dim", "df_num_layers",
                  "df_pathway_kernel_size_t", "linear_groups", "enc_linear_groups"):
            if p[k] < 1:
                raise Refuse("%s: %s = %d: must be positive" % (w, k, p[k]))
        for k in ("df_lookahead", "conv_lookahead"):
            if p[k] < 0:
                raise Refuse("%s: %s = %d: must not be negative" % (w, k, p[k]))
        if not math.isfinite(p["norm_tau"]) or p["norm_tau"] <= 0:
            raise Refuse("%s: norm_tau = %r: must be positive" % (w, p["norm_tau"]))
        if p["fft_size"] % 2 or p["hop_size"] * 2 > p["fft_size"] or p["fft_size"] % p["hop_size"]:
            raise Refuse("%s: fft_size %d / hop_size %d: need an even fft_size that is a multiple of "
                         "hop_size, hop_size <= fft_size/2" % (w, p["fft_size"], p["hop_size"]))
        if p["nb_erb"] % 8:
            raise Refuse("%s: nb_erb = %d: must be a multiple of 8" % (w, p["nb_erb"]))
        if p["nb_df"] % 2 or p["nb_df"] + 1 >= p["fft_size"] // 2 + 1:
            raise Refuse("%s: nb_df = %d: must be even and below fft_size/2 (%d)"
                         % (w, p["nb_df"], p["fft_size"] // 2))
        if p["nb_erb"] > (p["fft_size"] // 2 + 1) // p["min_nb_erb_freqs"]:
            raise Refuse("%s: %d ERB bands of at least %d bins do not fit in %d bins"
                         % (w, p["nb_erb"], p["min_nb_erb_freqs"], p["fft_size"] // 2 + 1))
        if p["conv_lookahead"] > 0 and p["conv_lookahead"] < p["df_lookahead"]:
            raise Refuse("%s: conv_lookahead %d < df_lookahead %d"
                         % (w, p["conv_lookahead"], p["df_lookahead"]))
        if p["df_lookahead"] >= p["df_order"]:
            raise Refuse("%s: df_lookahead %d must be below df_order %d"
                         % (w, p["df_lookahead"], p["df_order"]))
        if p["df_n_iter"] != 1:
            raise Refuse("%s: df_n_iter = %d: the reference asserts 1" % (w, p["df_n_iter"]))
        if p["lsnr_dropout"]:
            raise Refuse("%s: lsnr_dropout = true is not supported" % w)
        if p["enc_concat"]:
            raise Refuse("%s: enc_concat = true is not supported" % w)
        for k in ("emb_gru_skip_enc", "emb_gru_skip"):
            if p[k].lower() != "none":
                raise Refuse("%s: %s = %s: only none is supported" % (w, k, p[k]))
        if p["df_gru_skip"].lower() not in ("none", "groupedlinear"):
            raise Refuse("%s: df_gru_skip = %s: only none and groupedlinear are supported"
                         % (w, p["df_gru_skip"]))
        if p["emb_num_layers"] < 2:
            raise Refuse("%s: emb_num_layers = %d: the ERB decoder needs at least one GRU layer"
                         % (w, p["emb_num_layers"]))
        C, E, D = p["conv_ch"], p["nb_erb"], p["nb_df"]
        G, Ge = p["linear_groups"], p["enc_linear_groups"]
        emb = C * E // 4
        for what, n, g in (("conv_ch*nb_erb/4", emb, G), ("emb_hidden_dim", p["emb_hidden_dim"], G),
                           ("df_hidden_dim", p["df_hidden_dim"], G),
                           ("nb_df*2*df_order", D * 2 * p["df_order"], G),
                           ("conv_ch*nb_df/2", C * D // 2, Ge), ("conv_ch*nb_erb/4", emb, Ge),
                           ("conv_ch*nb_erb/4", emb, 8), ("df_hidden_dim", p["df_hidden_dim"], 8)):
            if n % g:
                raise Refuse("%s: %s = %d is not divisible by its %d linear groups" % (w, what, n, g))


# ------------------------------------------------------------------ libDF erb_fb (f32)

def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def erb_widths(sr, fft_size, nb_bands, min_nb_freqs):
    """libDF lib.rs erb_fb in f32 arithmetic: bins per ERB band."""
    def freq2erb(f):
        return f32(f32(9.265) * f32(math.log1p(f32(f / f32(24.7 * 9.265)))))

    def erb2freq(n):
        return f32(f32(24.7 * 9.265) * f32(math.exp(f32(n / f32(9.265))) - 1.0))
    freq_width = f32(f32(sr) / f32(fft_size))
    lo, hi = freq2erb(0.0), freq2erb(f32(sr // 2))
    step = f32(f32(hi - lo) / f32(nb_bands))
    erb, prev, over = [], 0, 0
    for i in range(1, nb_bands + 1):
        v = f32(erb2freq(f32(lo + f32(i * step))) / freq_width)
        fb = int(math.floor(v + 0.5))          # f32::round, v >= 0
        n = fb - prev - over
        if n < min_nb_freqs:
            over, n = min_nb_freqs - n, min_nb_freqs
        else:
            over = 0
        erb.append(n)
        prev = fb
    erb[-1] += 1
    too_large = sum(erb) - (fft_size // 2 + 1)
    if too_large > 0:
        erb[-1] -= too_large
    return erb


def norm_alpha(sr, hop, tau):
    """df/utils.py get_norm_alpha: exp(-hop/sr/tau) rounded to 3 (or more) decimals."""
    a_ = math.exp(-(hop / sr) / tau)
    precision, a = 3, 1.0
    while a >= 1.0:
        a = round(a_, precision)
        precision += 1
    return a


# ------------------------------------------------------------------ expected tensors

def conv_norm_act(want, name, cin, cout, k, separable=True, transposed=False):
    """Conv2dNormAct / ConvTranspose2dNormAct (df/modules.py): names and shapes."""
    kt, kf = (k, k) if isinstance(k, int) else k
    i = 1 if kt > 1 else 0                  # ConstantPad2d first when the time kernel > 1
    groups = math.gcd(cin, cout) if separable else 1
    if groups == 1:
        separable = False
    if max(kt, kf) == 1 and not transposed:
        separable = False
    if transposed:
        want["%s.%d.weight" % (name, i)] = [cin, cout // groups, kt, kf]
    else:
        want["%s.%d.weight" % (name, i)] = [cout, cin // groups, kt, kf]
    i += 1
    if separable:
        want["%s.%d.weight" % (name, i)] = [cout, cout, 1, 1]
        i += 1
    for b in BN:
        want["%s.%d.%s" % (name, i, b)] = [cout]


def grouped_linear(want, name, i, o, g):
    want[name] = [g, i // g, o // g]


def squeezed_gru(want, name, i, h, o, layers, groups):
    grouped_linear(want, name + ".linear_in.0.weight", i, h, groups)
    for k in range(layers):
        want["%s.gru.weight_ih_l%d" % (name, k)] = [3 * h, h]
        want["%s.gru.weight_hh_l%d" % (name, k)] = [3 * h, h]
        want["%s.gru.bias_ih_l%d" % (name, k)] = [3 * h]
        want["%s.gru.bias_hh_l%d" % (name, k)] = [3 * h]
    if o is not None:
        grouped_linear(want, name + ".linear_out.0.weight", h, o, groups)


def expected(p):
    """name -> shape of every tensor of df/deepfilternet3.py DfNet for config p."""
    C, E, D, O = p["conv_ch"], p["nb_erb"], p["nb_df"], p["df_order"]
    F = p["fft_size"] // 2 + 1
    emb = C * E // 4
    G = p["linear_groups"]
    w = {"erb_fb": [F, E], "mask.erb_inv_fb": [E, F]}
    conv_norm_act(w, "enc.erb_conv0", 1, C, p["conv_kernel_inp"])
    for k in (1, 2, 3):
        conv_norm_act(w, "enc.erb_conv%d" % k, C, C, p["conv_kernel"])
    conv_norm_act(w, "enc.df_conv0", 2, C, p["conv_kernel_inp"])
    conv_norm_act(w, "enc.df_conv1", C, C, p["conv_kernel"])
    grouped_linear(w, "enc.df_fc_emb.0.weight", C * D // 2, emb, p["enc_linear_groups"])
    squeezed_gru(w, "enc.emb_gru", emb, p["emb_hidden_dim"], emb, 1, G)
    w["enc.lsnr_fc.0.weight"], w["enc.lsnr_fc.0.bias"] = [1, emb], [1]
    squeezed_gru(w, "erb_dec.emb_gru", emb, p["emb_hidden_dim"], emb, p["emb_num_layers"] - 1, G)
    for k in (3, 2, 1, 0):
        conv_norm_act(w, "erb_dec.conv%dp" % k, C, C, 1)
    conv_norm_act(w, "erb_dec.convt3", C, C, p["conv_kernel"])
    conv_norm_act(w, "erb_dec.convt2", C, C, p["convt_kernel"], transposed=True)
    conv_norm_act(w, "erb_dec.convt1", C, C, p["convt_kernel"], transposed=True)
    conv_norm_act(w, "erb_dec.conv0_out", C, 1, p["conv_kernel"])
    conv_norm_act(w, "df_dec.df_convp", C, 2 * O, (p["df_pathway_kernel_size_t"], 1))
    squeezed_gru(w, "df_dec.df_gru", emb, p["df_hidden_dim"], None, p["df_num_layers"], 8)
    if p["df_gru_skip"].lower() == "groupedlinear":
        grouped_linear(w, "df_dec.df_skip.weight", emb, p["df_hidden_dim"], G)
    grouped_linear(w, "df_dec.df_out.0.weight", p["df_hidden_dim"], D * 2 * O, G)
    w["df_dec.df_fc_a.0.weight"], w["df_dec.df_fc_a.0.bias"] = [1, p["df_hidden_dim"]], [1]
    return w


def load_state(path, shown):
    ck = Checkpoint(path)
    obj = ck.obj
    if not isinstance(obj, dict):
        raise Refuse("%s: holds a %s, not a state dict" % (shown, type(obj).__name__))
    if not obj:
        raise Refuse("%s: the state dict is empty" % shown)
    state = {}
    for k, v in obj.items():
        if not isinstance(k, str) or not k:
            raise Refuse("%s: state dict has a non-string key %r" % (shown, k))
        if not isinstance(v, TensorRef):
            raise Refuse("%s: state entry %s is a %s, not a tensor" % (shown, k, type(v).__name__))
        k = k.replace("clc", "df")                       # read_cp
        if k.endswith(".h0") or "erb_comp" in k or k.endswith(".num_batches_tracked"):
            continue
        state[k] = v
    return ck, state


def check_filterbanks(ck, state, widths, shown):
    """erb_fb / mask.erb_inv_fb must be the banks of the config's ERB widths."""
    F, E = sum(widths), len(widths)
    inv = [[0.0] * F for _ in range(E)]
    b = 0
    for e, n in enumerate(widths):
        for k in range(b, b + n):
            inv[e][k] = 1.0
        b += n
    for name, rows, cols, val in (
            ("mask.erb_inv_fb", E, F, lambda r, c: inv[r][c]),
            ("erb_fb", F, E, lambda r, c: inv[c][r] / widths[c])):
        dt, shp, data = ck.tensor(state[name], name)
        vals = struct.unpack("<%df" % (rows * cols), to_f32(dt, data))
        for r in range(rows):
            for c in range(cols):
                want = val(r, c)
                if abs(vals[r * cols + c] - want) > 1e-3 * max(1.0, abs(want)):
                    raise Refuse("%s: %s[%d, %d] = %g, expected %g: the checkpoint's ERB filter bank "
                                 "does not match the ERB bands of config.ini (%s)"
                                 % (shown, name, r, c, vals[r * cols + c], want,
                                    ",".join(map(str, widths))))


# ------------------------------------------------------------------ main

def run(a):
    with tempfile.TemporaryDirectory(prefix="dfnconv.") as tmp:
        m = Model(a.model, tmp)
        cfg = Config(m.config, "%s: config.ini" % a.model)
        p = cfg.p
        shown = "%s: %s" % (a.model, m.ckpt_name)
        try:
            ck, state = load_state(m.ckpt, shown)
        except Refuse as e:
            if str(e).startswith(shown):
                raise
            raise Refuse("%s: %s" % (shown, e), e.code)
        want = expected(p)
        for name in state:
            if name not in want:
                raise Refuse("%s: unexpected tensor %s: not a DeepFilterNet3 of this config.ini"
                             % (shown, name))
        for name, shape in want.items():
            t = state.get(name)
            if t is None:
                raise Refuse("%s: tensor %s missing" % (shown, name))
            if list(t.size) != shape:
                raise Refuse("%s: tensor %s is %s; expected %s for config.ini (conv_ch %d, nb_erb %d, "
                             "nb_df %d, df_order %d)" % (shown, name, list(t.size), shape, p["conv_ch"],
                                                         p["nb_erb"], p["nb_df"], p["df_order"]))
        widths = erb_widths(p["sr"], p["fft_size"], p["nb_erb"], p["min_nb_erb_freqs"])
        if min(widths) < 1 or sum(widths) != p["fft_size"] // 2 + 1:
            raise Refuse("%s: config.ini: ERB bands %s do not cover the %d bins"
                         % (a.model, widths, p["fft_size"] // 2 + 1))
        try:
            check_filterbanks(ck, state, widths, shown)
            tensors, params = [], 0
            for name in want:
                dt, shp, b = ck.tensor_as(state[name], name, a.dtype)
                tensors.append((name, dt, shp, b))
                params += numel(shp)
        except Refuse as e:
            if str(e).startswith(shown):
                raise
            raise Refuse("%s: %s" % (shown, e), e.code)
    meta = {"dfn.%s" % k: v for k, v in cfg.raw.items()}
    for sec, key, _, _ in PARAMS:
        meta["dfn.%s.%s" % (sec, key)] = fmt(p[key])
    meta.update({
        "stemsplit.architecture": "deepfilternet3",
        "stemsplit.sources": "speech",
        "stemsplit.residual": "noise",
        "stemsplit.segment": "1",
        "stemsplit.samplerate": str(p["sr"]),
        "stemsplit.channels": "1",
        "stemsplit.converter": "%s %s" % (PROG, VERSION),
        "dfn.erb_widths": ",".join(map(str, widths)),
        "dfn.norm_alpha": repr(norm_alpha(p["sr"], p["hop_size"], p["norm_tau"])),
        "dfn.epoch": str(m.epoch),
    })
    if a.name is not None:
        meta["stemsplit.name"] = a.name
    write_safetensors(a.output, tensors, meta)
    print("%s: wrote %s: deepfilternet3, %d tensors, %d parameters, %.1f MB, fft %d hop %d, "
          "%d ERB bands, %d DF bins" % (PROG, a.output, len(tensors), params,
                                        sum(len(t[3]) for t in tensors) / 1e6, p["fft_size"],
                                        p["hop_size"], p["nb_erb"], p["nb_df"]), file=sys.stderr)


def main(argv=None):
    ap = parser(PROG, __doc__, "Details: docs/deepfilternet-format.md")
    ap.add_argument("model", metavar="MODEL",
                    help="model folder (config.ini, checkpoints/) or its .zip/.tar.gz archive")
    return run_main(PROG, run, parse_args(ap, argv, VERSION))


if __name__ == "__main__":
    sys.exit(main())
