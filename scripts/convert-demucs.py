#!/usr/bin/env python3
"""convert-demucs.py - convert demucs v4 (HTDemucs) checkpoints to a stemsplit
model file (.safetensors).  Python 3 standard library only: no torch.

  convert-demucs.py -o OUT.safetensors IN.th [IN2.th ...]
                    [--weights W] [--dtype keep|f32|f16|bf16] [--name NAME]

One input: a single model.  Several inputs: a bag of models (as demucs's
BagOfModels, e.g. htdemucs_ft), tensors named `models.{i}.<name>`, combined
with the weight matrix W: N rows (one per model) of S comma-separated floats
(one per source), rows separated by `;` -- e.g. "1,0,0,0;0,1,1,1".  Default:
all ones.  Format and metadata: docs/htdemucs-format.md.

Checkpoints are torch's zip serialization of the dict demucs's
states.serialize_model() builds ('klass', 'args', 'kwargs', 'state', ...).
They are read with torchckpt.py's restricted unpickler: only an explicit
allow-list of globals is resolved (and none of them is called except plain
containers, fractions and stand-ins), so converting never runs code from the
file.  Anything else is refused.

Exit status: 0 ok, 64 usage, 65 bad or unsupported input, 66 input missing,
73 cannot create output, 74 I/O error.
"""
import collections
import fractions
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torchckpt import (EX_USAGE, EX_DATAERR, EX_NOINPUT, EX_CANTCREAT, EX_IOERR,  # noqa: E402,F401
                       Refuse, Checkpoint, TensorRef, _is_int, to_f32, from_f32,
                       convert_dtype, write_safetensors, fmt_value, parser, parse_args,
                       run_main)

VERSION = "1.0"
PROG = "convert-demucs.py"

# HTDemucs.__init__ (demucs v4, demucs/htdemucs.py): every argument in order,
# with its default.  `sources` has none: it is required.
REQUIRED = object()
HTDEMUCS_PARAMS = [
    ("sources", REQUIRED),
    ("audio_channels", 2), ("channels", 48), ("channels_time", None), ("growth", 2),
    ("nfft", 4096), ("wiener_iters", 0), ("end_iters", 0), ("wiener_residual", False),
    ("cac", True), ("depth", 4), ("rewrite", True), ("multi_freqs", None),
    ("multi_freqs_depth", 3), ("freq_emb", 0.2), ("emb_scale", 10), ("emb_smooth", True),
    ("kernel_size", 8), ("time_stride", 2), ("stride", 4), ("context", 1), ("context_enc", 0),
    ("norm_starts", 4), ("norm_groups", 4), ("dconv_mode", 1), ("dconv_depth", 2),
    ("dconv_comp", 8), ("dconv_init", 1e-3), ("bottom_channels", 0), ("t_layers", 5),
    ("t_emb", "sin"), ("t_hidden_scale", 4.0), ("t_heads", 8), ("t_dropout", 0.0),
    ("t_max_positions", 10000), ("t_norm_in", True), ("t_norm_in_group", False),
    ("t_group_norm", False), ("t_norm_first", True), ("t_norm_out", True),
    ("t_max_period", 10000.0), ("t_weight_decay", 0.0), ("t_lr", None),
    ("t_layer_scale", True), ("t_gelu", True), ("t_weight_pos_embed", 1.0),
    ("t_sin_random_shift", 0), ("t_cape_mean_normalize", True), ("t_cape_augment", True),
    ("t_cape_glob_loc_scale", [5000.0, 1.0, 1.4]), ("t_sparse_self_attn", False),
    ("t_sparse_cross_attn", False), ("t_mask_type", "diag"), ("t_mask_random_seed", 42),
    ("t_sparse_attn_window", 500), ("t_global_window", 100), ("t_sparsity", 0.95),
    ("t_auto_sparsity", False), ("t_cross_first", False), ("rescale", 0.1),
    ("samplerate", 44100), ("segment", 10), ("use_train_segment", True),
]
PARAM_NAMES = [n for n, _ in HTDEMUCS_PARAMS]

# Top-level state_dict prefixes an HTDemucs model has.
STATE_PREFIXES = ("encoder.", "decoder.", "tencoder.", "tdecoder.", "crosstransformer.",
                  "channel_upsampler.", "channel_downsampler.", "channel_upsampler_t.",
                  "channel_downsampler_t.", "freq_emb.")


# ------------------------------------------------------------------ unpickling
# Stand-ins for the allowed globals.  None of them does anything but record
# its arguments (after type checks).

class ModelClass:
    """A demucs model class named in the checkpoint (never instantiated)."""

    def __init__(self, module, name):
        self.module, self.name = module, name

    def __repr__(self):
        return "%s.%s" % (self.module, self.name)


FOREIGN_MODELS = {("demucs.hdemucs", "HDemucs"), ("demucs.demucs", "Demucs"),
                  ("demucs.train", "TorchHDemucsWrapper"), ("demucs.tasnet", "ConvTasNet"),
                  ("demucs.tasnet_v2", "ConvTasNet")}


def find_demucs_class(module, name):
    """Demucs model classes named in a package resolve to inert ModelClass stand-ins."""
    if (module, name) == ("demucs.htdemucs", "HTDemucs") or (module, name) in FOREIGN_MODELS \
            or module == "demucs.wdemucs":
        return ModelClass(module, name)
    return None


# ------------------------------------------------------------------ model package

def plain_value(v, depth=0):
    """True for values a hyperparameter may hold: numbers, strings, None, lists of them."""
    if v is None or isinstance(v, (bool, int, float, str, fractions.Fraction)):
        return not isinstance(v, float) or math.isfinite(v)
    if isinstance(v, (list, tuple)) and depth == 0:
        return all(plain_value(x, 1) for x in v)
    return False


def segment_fraction(seg):
    if isinstance(seg, fractions.Fraction):
        return seg
    if isinstance(seg, float):
        return fractions.Fraction(repr(seg))          # 7.8 -> 39/5, not the binary value
    return fractions.Fraction(seg)


class Model:
    """One HTDemucs checkpoint: resolved hyperparameters and its tensors."""

    def __init__(self, path):
        self.path = path
        self.ckpt = Checkpoint(path, find_demucs_class)
        pkg = self.ckpt.obj
        if not isinstance(pkg, dict):
            raise Refuse("not a demucs model package (a %s, not a dict)" % type(pkg).__name__)
        if "klass" not in pkg or "state" not in pkg:
            if all(isinstance(v, TensorRef) for v in pkg.values()) and pkg:
                raise Refuse("holds a bare state_dict, not a demucs model package "
                             "(no 'klass', 'args', 'kwargs'): hyperparameters unknown")
            raise Refuse("not a demucs model package (no 'klass' or 'state')")
        klass = pkg["klass"]
        if not isinstance(klass, ModelClass):
            raise Refuse("not a demucs model package ('klass' is %r)" % (klass,))
        if (klass.module, klass.name) != ("demucs.htdemucs", "HTDemucs"):
            raise Refuse("checkpoint holds a %s model; stemsplit supports HTDemucs only" % klass)
        if pkg.get("quantizer") is not None:
            raise Refuse("quantized checkpoint (has a quantizer); stemsplit supports "
                         "unquantized float checkpoints only")
        state = pkg["state"]
        if not isinstance(state, dict):
            raise Refuse("'state' is not a dict")
        if "__quantized" in state or "quantized" in state:
            raise Refuse("quantized checkpoint (state stored quantized, e.g. a *_q model); "
                         "stemsplit supports unquantized float checkpoints only")
        for k, v in state.items():
            if not isinstance(k, str) or not k:
                raise Refuse("state has a non-string key %r" % (k,))
            if not isinstance(v, TensorRef):
                raise Refuse("state entry %s is a %s, not a tensor" % (k, type(v).__name__))
        self.state = state
        self.params = self.resolve(pkg.get("args", ()), pkg.get("kwargs", {}))
        self.check_state()

    def warn(self, msg):
        print("%s: %s: warning: %s" % (PROG, self.path, msg), file=sys.stderr)

    def resolve(self, args, kwargs):
        if args is None:
            args = ()
        if kwargs is None:
            kwargs = {}
        if not isinstance(args, (tuple, list)) or not isinstance(kwargs, dict):
            raise Refuse("malformed 'args'/'kwargs'")
        if len(args) > len(PARAM_NAMES):
            raise Refuse("%d positional arguments; HTDemucs takes at most %d"
                         % (len(args), len(PARAM_NAMES)))
        p = collections.OrderedDict(HTDEMUCS_PARAMS)
        for name, v in zip(PARAM_NAMES, args):
            p[name] = v
        for name, v in kwargs.items():
            if not isinstance(name, str):
                raise Refuse("malformed kwargs key %r" % (name,))
            if name not in p:
                self.warn("dropping unknown HTDemucs argument %s=%r (as demucs does)" % (name, v))
                continue
            if name in PARAM_NAMES[:len(args)]:
                raise Refuse("argument %s given both positionally and by name" % name)
            p[name] = v
        src = p["sources"]
        if src is REQUIRED:
            raise Refuse("no 'sources' list in the model arguments")
        if (not isinstance(src, (list, tuple)) or not src
                or not all(isinstance(s, str) and s and "," not in s and s.strip() == s
                           for s in src) or len(set(src)) != len(src)):
            raise Refuse("bad 'sources' %r: need a list of distinct non-empty names "
                         "without commas" % (src,))
        p["sources"] = list(src)
        for name, v in p.items():
            if not plain_value(v):
                raise Refuse("hyperparameter %s has an unsupported value %r" % (name, v))
            default = dict(HTDEMUCS_PARAMS)[name]
            if isinstance(default, bool) and not isinstance(v, bool):
                raise Refuse("hyperparameter %s=%r: expected true/false" % (name, v))
        for name in ("audio_channels", "channels", "depth", "nfft", "samplerate", "kernel_size",
                     "stride", "time_stride", "growth"):
            v = p[name]
            if not (_is_int(v) or isinstance(v, float) and v.is_integer()) or v <= 0:
                raise Refuse("hyperparameter %s=%r: expected a positive integer" % (name, v))
        for name in ("t_layers", "bottom_channels", "t_heads"):
            v = p[name]
            if not _is_int(v) or v < 0:
                raise Refuse("hyperparameter %s=%r: expected an integer >= 0" % (name, v))
        seg = p["segment"]
        if isinstance(seg, bool) or not isinstance(seg, (int, float, fractions.Fraction)) \
                or not seg > 0:
            raise Refuse("hyperparameter segment=%r: expected a positive number" % (seg,))
        return p

    def check_state(self):
        """Loose structural checks (the C loader checks every shape exactly)."""
        p, st = self.params, self.state
        for k in st:
            if not k.startswith(STATE_PREFIXES):
                raise Refuse("unexpected tensor %s for an HTDemucs model" % k)

        def shape(name):
            t = st.get(name)
            if t is None:
                raise Refuse("tensor %s missing (hyperparameters and state disagree)" % name)
            return t.size

        depth, C, S = p["depth"], p["audio_channels"], len(p["sources"])
        cac = 2 if p["cac"] else 1
        for i in range(depth):
            shape("encoder.%d.conv.weight" % i)
            shape("decoder.%d.conv_tr.weight" % i)
        if any(k.startswith("encoder.%d." % depth) or k.startswith("decoder.%d." % depth)
               for k in st):
            raise Refuse("state has more than depth=%d encoder/decoder layers" % depth)
        e0 = shape("encoder.0.conv.weight")
        if len(e0) < 2 or e0[0] != p["channels"] or e0[1] != C * cac:
            raise Refuse("encoder.0.conv.weight is %r; channels=%s, audio_channels=%d imply "
                         "[%s, %d, ...]" % (list(e0), p["channels"], C, p["channels"], C * cac))
        dl = shape("decoder.%d.conv_tr.weight" % (depth - 1))
        if len(dl) < 2 or dl[1] != S * C * cac:
            raise Refuse("decoder.%d.conv_tr.weight is %r: %d output channels, but %d sources "
                         "x %d audio channels imply %d" % (depth - 1, list(dl),
                                                          dl[1] if len(dl) > 1 else -1,
                                                          S, C, S * C * cac))
        ntd = 1 + max([int(k.split(".")[1]) for k in st if k.startswith("tdecoder.")
                       and k.split(".")[1].isdigit()] or [-1])
        if ntd:
            tl = shape("tdecoder.%d.conv_tr.weight" % (ntd - 1))
            if len(tl) < 2 or tl[1] != S * C:
                raise Refuse("tdecoder.%d.conv_tr.weight is %r; %d sources x %d audio channels "
                             "imply %d output channels" % (ntd - 1, list(tl), S, C, S * C))
        has_t = any(k.startswith("crosstransformer.") for k in st)
        if has_t != (p["t_layers"] > 0):
            raise Refuse("t_layers=%d but the state %s a crosstransformer"
                         % (p["t_layers"], "has" if has_t else "has no"))
        if has_t:
            nl = 1 + max([int(k.split(".")[2]) for k in st
                          if k.startswith("crosstransformer.layers.")] or [-1])
            if nl != p["t_layers"]:
                raise Refuse("t_layers=%d but the state has %d transformer layers"
                             % (p["t_layers"], nl))
        has_b = "channel_upsampler.weight" in st
        if has_b != (p["bottom_channels"] > 0):
            raise Refuse("bottom_channels=%d but the state %s channel_upsampler"
                         % (p["bottom_channels"], "has" if has_b else "has no"))
        has_e = "freq_emb.embedding.weight" in st
        if has_e != bool(p["freq_emb"]):
            raise Refuse("freq_emb=%r but the state %s freq_emb.embedding.weight"
                         % (p["freq_emb"], "has" if has_e else "has no"))

    def meta(self, prefix):
        return {prefix + "htdemucs." + k: fmt_value(v) for k, v in self.params.items()}


# ------------------------------------------------------------------ main

def parse_weights(text, n, sources):
    rows = text.split(";")
    if len(rows) != n:
        raise Refuse("--weights has %d rows; need %d (one per model)" % (len(rows), n), EX_USAGE)
    out = []
    for r in rows:
        try:
            vals = [float(x) for x in r.split(",")]
        except ValueError:
            raise Refuse("--weights: bad number in row '%s'" % r, EX_USAGE)
        if len(vals) != len(sources) or not all(math.isfinite(v) for v in vals):
            raise Refuse("--weights: row '%s' needs %d finite numbers (sources %s)"
                         % (r, len(sources), ",".join(sources)), EX_USAGE)
        out.append(vals)
    for k, s in enumerate(sources):
        if sum(row[k] for row in out) == 0:
            raise Refuse("--weights: source %s has total weight 0" % s, EX_USAGE)
    return out


def num(v):
    return str(int(v)) if float(v).is_integer() and abs(v) < 1e15 else repr(float(v))


def run(a):
    models = []
    for path in a.inputs:
        try:
            models.append(Model(path))
        except Refuse as e:
            raise Refuse("%s: %s" % (path, e), e.code)
    m0 = models[0]
    p0 = m0.params
    for m in models[1:]:
        for key in ("sources", "samplerate", "audio_channels"):
            if m.params[key] != p0[key]:
                raise Refuse("%s: %s %r differs from %s's %r: the models of a bag must agree"
                             % (m.path, key, m.params[key], m0.path, p0[key]))
        if segment_fraction(m.params["segment"]) != segment_fraction(p0["segment"]):
            raise Refuse("%s: segment %s differs from %s's %s: the models of a bag must agree"
                         % (m.path, m.params["segment"], m0.path, p0["segment"]))
    bag = len(models) > 1
    if a.weights is not None and not bag:
        raise Refuse("--weights needs two or more input models", EX_USAGE)
    meta = {
        "stemsplit.architecture": "htdemucs",
        "stemsplit.sources": ",".join(p0["sources"]),
        "stemsplit.samplerate": fmt_value(int(p0["samplerate"])),
        "stemsplit.channels": fmt_value(int(p0["audio_channels"])),
        "stemsplit.segment": fmt_value(segment_fraction(p0["segment"])),
        "stemsplit.converter": "%s %s" % (PROG, VERSION),
    }
    if a.name is not None:
        meta["stemsplit.name"] = a.name
    tensors = []
    if bag:
        w = (parse_weights(a.weights, len(models), p0["sources"]) if a.weights is not None
             else [[1.0] * len(p0["sources"]) for _ in models])
        meta["stemsplit.bag"] = str(len(models))
        meta["stemsplit.bag.weights"] = ";".join(",".join(num(v) for v in row) for row in w)
    for i, m in enumerate(models):
        prefix = "models.%d." % i if bag else ""
        meta.update(m.meta(prefix))
        for name, t in m.state.items():
            try:
                dt, shp, b = m.ckpt.tensor_as(t, name, a.dtype)
            except Refuse as e:
                raise Refuse("%s: %s" % (m.path, e), e.code)
            tensors.append((prefix + name, dt, shp, b))
    write_safetensors(a.output, tensors, meta)
    nbytes = sum(len(t[3]) for t in tensors)
    print("%s: wrote %s: %s%d tensors, %.1f MB, sources %s, segment %s s" % (
        PROG, a.output, "bag of %d models, " % len(models) if bag else "", len(tensors),
        nbytes / 1e6, meta["stemsplit.sources"], meta["stemsplit.segment"]), file=sys.stderr)


def main(argv=None):
    ap = parser(PROG, __doc__, "Details: docs/htdemucs-format.md")
    ap.add_argument("inputs", nargs="+", metavar="IN.th", help="demucs checkpoint(s)")
    ap.add_argument("--weights", help="bag weight matrix: rows ';', values ','")
    return run_main(PROG, run, parse_args(ap, argv, VERSION))


if __name__ == "__main__":
    sys.exit(main())
