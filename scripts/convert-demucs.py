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
They are read with a restricted unpickler: only an explicit allow-list of
globals is resolved (and none of them is called except plain containers,
fractions and stand-ins defined here), so converting never runs code from the
file.  Anything else is refused.

Exit status: 0 ok, 64 usage, 65 bad or unsupported input, 66 input missing,
73 cannot create output, 74 I/O error.
"""
import argparse
import array
import collections
import fractions
import io
import itertools
import json
import math
import os
import pickle
import struct
import sys
import zipfile

VERSION = "1.0"
PROG = "convert-demucs.py"
EX_USAGE, EX_DATAERR, EX_NOINPUT, EX_CANTCREAT, EX_IOERR = 64, 65, 66, 73, 74

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


class Refuse(Exception):
    """Input refused: message for the user, exit status."""

    def __init__(self, msg, code=EX_DATAERR):
        super().__init__(msg)
        self.code = code


# ------------------------------------------------------------------ unpickling
# Stand-ins for the allowed globals.  None of them does anything but record
# its arguments (after type checks).

class ModelClass:
    """A demucs model class named in the checkpoint (never instantiated)."""

    def __init__(self, module, name):
        self.module, self.name = module, name

    def __repr__(self):
        return "%s.%s" % (self.module, self.name)


class DType:
    def __init__(self, name, st, size):
        self.name, self.st, self.size = name, st, size     # st: safetensors dtype or None


class StorageType:
    def __init__(self, name, dtype):
        self.name, self.dtype = name, dtype


class Storage:
    def __init__(self, stype, key, numel):
        self.stype, self.key, self.numel = stype, key, numel


class TensorRef:
    def __init__(self, storage, offset, size, stride, dtype):
        self.storage, self.offset, self.size, self.stride, self.dtype = (
            storage, offset, size, stride, dtype)


DTYPES = {n: DType(n, st, sz) for n, st, sz in [
    ("float16", "F16", 2), ("float32", "F32", 4), ("bfloat16", "BF16", 2),
    ("float64", None, 8), ("int8", None, 1), ("uint8", None, 1), ("int16", None, 2),
    ("int32", None, 4), ("int64", None, 8), ("bool", None, 1), ("qint8", None, 1),
    ("quint8", None, 1), ("qint32", None, 4), ("complex64", None, 8)]}
DTYPE_ALIASES = {"half": "float16", "float": "float32", "double": "float64", "long": "int64",
                 "int": "int32", "short": "int16"}
STORAGE_TYPES = {"HalfStorage": "float16", "FloatStorage": "float32",
                 "BFloat16Storage": "bfloat16", "DoubleStorage": "float64",
                 "CharStorage": "int8", "ByteStorage": "uint8", "ShortStorage": "int16",
                 "IntStorage": "int32", "LongStorage": "int64", "BoolStorage": "bool",
                 "QInt8Storage": "qint8", "QUInt8Storage": "quint8", "QInt32Storage": "qint32",
                 "ComplexFloatStorage": "complex64"}


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _int_tuple(v, what):
    if not isinstance(v, (tuple, list)) or len(v) > 16 or not all(_is_int(x) and x >= 0 for x in v):
        raise Refuse("malformed tensor %s %r" % (what, v))
    return tuple(v)


def _rebuild_tensor(storage, offset, size, stride, dtype=None):
    if not isinstance(storage, Storage):
        raise Refuse("malformed tensor: storage is %s" % type(storage).__name__)
    if not _is_int(offset) or offset < 0:
        raise Refuse("malformed tensor offset %r" % (offset,))
    size, stride = _int_tuple(size, "size"), _int_tuple(stride, "stride")
    if len(size) != len(stride):
        raise Refuse("malformed tensor: size %r and stride %r differ in length" % (size, stride))
    return TensorRef(storage, offset, size, stride, dtype or storage.stype.dtype)


def _rebuild_tensor_v2(storage, offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    return _rebuild_tensor(storage, offset, size, stride)


def _rebuild_tensor_v3(storage, offset, size, stride, requires_grad, backward_hooks,
                       dtype, metadata=None):
    if not isinstance(dtype, DType):
        raise Refuse("malformed tensor dtype %r" % (dtype,))
    return _rebuild_tensor(storage, offset, size, stride, dtype)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, *rest):
    if not isinstance(data, TensorRef):
        raise Refuse("malformed parameter")
    return data


def _make_fraction(*args):
    if not 1 <= len(args) <= 2 or not all(
            _is_int(a) and abs(a) < 1 << 64 or isinstance(a, str) and len(a) < 64 for a in args):
        raise Refuse("malformed Fraction%r" % (args,))
    return fractions.Fraction(*args)


def _make_size(*args):
    if len(args) == 1:
        return _int_tuple(args[0], "size")
    return _int_tuple(args, "size")


def _codecs_encode(text, encoding="latin1"):
    # protocol-2 pickles encode bytes objects as _codecs.encode(str, 'latin1')
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise Refuse("malformed bytes object in pickle")
    return text.encode("latin1")


FOREIGN_MODELS = {("demucs.hdemucs", "HDemucs"), ("demucs.demucs", "Demucs"),
                  ("demucs.train", "TorchHDemucsWrapper"), ("demucs.tasnet", "ConvTasNet"),
                  ("demucs.tasnet_v2", "ConvTasNet")}


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves only allow-listed globals, to inert stand-ins."""

    def __init__(self, f, storages):
        super().__init__(f)
        self.storages = storages          # key -> Storage

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch._utils":
            fn = {"_rebuild_tensor": _rebuild_tensor, "_rebuild_tensor_v2": _rebuild_tensor_v2,
                  "_rebuild_tensor_v3": _rebuild_tensor_v3,
                  "_rebuild_parameter": _rebuild_parameter}.get(name)
            if fn:
                return fn
        if module == "torch":
            if name in STORAGE_TYPES:
                return StorageType(name, DTYPES[STORAGE_TYPES[name]])
            if name in DTYPES or name in DTYPE_ALIASES:
                return DTYPES[DTYPE_ALIASES.get(name, name)]
            if name == "Size":
                return _make_size
        if (module, name) in (("torch", "UntypedStorage"), ("torch.storage", "UntypedStorage"),
                              ("torch", "ByteStorage")):
            return StorageType(name, DTYPES["uint8"])
        if (module, name) == ("fractions", "Fraction"):
            return _make_fraction
        if (module, name) == ("_codecs", "encode"):
            return _codecs_encode
        if (module, name) == ("demucs.htdemucs", "HTDemucs") or (module, name) in FOREIGN_MODELS \
                or module == "demucs.wdemucs":
            return ModelClass(module, name)
        raise Refuse("refusing to unpickle global %s.%s: not on the allow-list" % (module, name))

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], StorageType) and isinstance(pid[2], str)
                and _is_int(pid[4]) and pid[4] >= 0):
            raise Refuse("malformed storage reference %r" % (pid,))
        stype, key, numel = pid[1], pid[2], pid[4]
        old = self.storages.get(key)
        if old is not None:
            if old.stype.dtype is not stype.dtype:
                raise Refuse("storage %s referenced with two types" % key)
            return old
        st = Storage(stype, key, numel)
        self.storages[key] = st
        return st


class Checkpoint:
    """An opened torch zip checkpoint: the unpickled object and its storages."""

    def __init__(self, path):
        self.path = path
        try:
            with open(path, "rb") as f:
                head = f.read(8)
        except FileNotFoundError:
            raise Refuse("no such file", EX_NOINPUT)
        except OSError as e:
            raise Refuse("cannot read: %s" % e.strerror, EX_NOINPUT)
        if not zipfile.is_zipfile(path):
            if head[:1] == b"\x80" or head[:2] == b"\x8a\x0a":
                raise Refuse("legacy (non-zip, torch < 1.6) checkpoint format is not supported; "
                             "re-save it with torch >= 1.6")
            raise Refuse("not a torch checkpoint (not a zip archive)")
        try:
            self.zip = zipfile.ZipFile(path)
            names = self.zip.namelist()
        except (zipfile.BadZipFile, OSError) as e:
            raise Refuse("corrupt zip archive: %s" % e)
        pkls = [n for n in names if n == "data.pkl" or n.endswith("/data.pkl")
                and n.count("/") == 1]
        if len(pkls) != 1:
            raise Refuse("not a torch checkpoint (%s data.pkl in the archive)"
                         % ("no" if not pkls else "more than one"))
        self.prefix = pkls[0][:-len("data.pkl")]
        order = "little"
        if self.prefix + "byteorder" in names:
            order = self.zip.read(self.prefix + "byteorder").decode("ascii", "replace").strip()
            if order not in ("little", "big"):
                raise Refuse("unknown byteorder %r" % order)
        self.byteorder = order
        self.storages = {}
        info = self.zip.getinfo(pkls[0])
        if info.file_size > 256 << 20:
            raise Refuse("data.pkl is implausibly large (%d bytes)" % info.file_size)
        data = self.zip.read(pkls[0])
        try:
            self.obj = RestrictedUnpickler(io.BytesIO(data), self.storages).load()
        except Refuse:
            raise
        except RecursionError:
            raise Refuse("malformed pickle: nested too deeply")
        except Exception as e:            # any other unpickling failure: malformed file
            raise Refuse("malformed pickle: %s: %s" % (type(e).__name__, e))
        self._cache = {}

    def storage_bytes(self, st):
        b = self._cache.get(st.key)
        if b is None:
            name = self.prefix + "data/" + st.key
            try:
                info = self.zip.getinfo(name)
            except KeyError:
                raise Refuse("storage %s missing from the archive" % st.key)
            need = st.numel * st.stype.dtype.size
            if info.file_size < need:
                raise Refuse("storage %s is %d bytes, needs %d" % (st.key, info.file_size, need))
            b = self.zip.read(name)
            self._cache[st.key] = b
        return b

    def tensor(self, t, name):
        """(safetensors dtype, shape, little-endian bytes, contiguous) of a TensorRef."""
        dt = t.dtype
        if dt.st is None:
            raise Refuse("tensor %s has dtype %s; only float16, float32 and bfloat16 are "
                         "supported" % (name, dt.name))
        if t.storage.stype.dtype.size != 1 and t.storage.stype.dtype is not dt:
            raise Refuse("tensor %s: dtype differs from its storage" % name)
        sz = dt.size
        raw = self.storage_bytes(t.storage)
        nbytes_storage = len(raw)
        numel = 1
        for d in t.size:
            numel *= d
        if numel == 0:
            return dt.st, list(t.size), b""
        last = t.offset + sum((d - 1) * s for d, s in zip(t.size, t.stride))
        if (last + 1) * sz > nbytes_storage:
            raise Refuse("tensor %s reaches past the end of its storage" % name)
        contig, acc = [], 1
        for d in reversed(t.size):
            contig.append(acc)
            acc *= d
        contig.reverse()
        if all(d == 1 or s == c for d, s, c in zip(t.size, t.stride, contig)):
            b = raw[t.offset * sz:(t.offset + numel) * sz]
        else:                              # strided view: gather element by element
            parts = []
            for idx in itertools.product(*[range(d) for d in t.size]):
                o = t.offset + sum(i * s for i, s in zip(idx, t.stride))
                parts.append(raw[o * sz:(o + 1) * sz])
            b = b"".join(parts)
        if self.byteorder == "big" and sz > 1:
            a = array.array({2: "H", 4: "I"}[sz], b)
            a.byteswap()
            b = a.tobytes()
        return dt.st, list(t.size), b


# ------------------------------------------------------------------ dtype conversion

def _le_array(code, b):
    a = array.array(code, b)
    if sys.byteorder == "big":
        a.byteswap()
    return a


def _le_bytes(a):
    if sys.byteorder == "big":
        a = array.array(a.typecode, a)
        a.byteswap()
    return a.tobytes()


def to_f32(st, b):
    if st == "F32":
        return b
    n = len(b) // 2
    if st == "F16":
        return struct.pack("<%df" % n, *struct.unpack("<%de" % n, b))
    return _le_bytes(array.array("I", [x << 16 for x in _le_array("H", b)]))     # BF16


def from_f32(st, b, name):
    if st == "F32":
        return b
    n = len(b) // 4
    if st == "F16":
        vals = struct.unpack("<%df" % n, b)
        try:
            return struct.pack("<%de" % n, *vals)
        except (OverflowError, struct.error):
            raise Refuse("tensor %s has values outside the float16 range" % name)
    out = array.array("H")                                                # BF16, nearest even
    for u in _le_array("I", b):
        if (u & 0x7F800000) == 0x7F800000 and (u & 0x7FFFFF):
            out.append((u >> 16) | 0x40)                                  # quiet NaN
        else:
            out.append(((u + 0x7FFF + ((u >> 16) & 1)) >> 16) & 0xFFFF)
    return _le_bytes(out)


def convert_dtype(st, b, want, name):
    if want in ("keep", st):
        return st, b
    return want, from_f32(want, to_f32(st, b), name)


# ------------------------------------------------------------------ model package

def fmt_value(v):
    """Hyperparameter value -> metadata string."""
    if v is None:
        return "none"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, fractions.Fraction):
        return str(v.numerator) if v.denominator == 1 else "%d/%d" % (v.numerator, v.denominator)
    if _is_int(v):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, str):
        return v
    if isinstance(v, (list, tuple)):
        return ",".join(fmt_value(x) for x in v)
    raise TypeError(type(v).__name__)


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
        self.ckpt = Checkpoint(path)
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


# ------------------------------------------------------------------ safetensors

def write_safetensors(path, tensors, meta):
    """tensors: list of (name, dtype, shape, bytes).  Ordered so every tensor
    starts at a multiple of its element size (4-byte dtypes first), header
    padded to 8 bytes; written to a temporary file and renamed."""
    size = {"F32": 4, "F16": 2, "BF16": 2}
    order = sorted(range(len(tensors)), key=lambda i: -size[tensors[i][1]])
    header = collections.OrderedDict()
    header["__metadata__"] = collections.OrderedDict(sorted(meta.items()))
    off = 0
    for i in order:
        name, dt, shp, b = tensors[i]
        header[name] = {"dtype": dt, "shape": shp, "data_offsets": [off, off + len(b)]}
        off += len(b)
    h = json.dumps(header, separators=(",", ":"), ensure_ascii=True).encode("ascii")
    h += b" " * (-len(h) % 8)
    tmp = "%s.tmp.%d" % (path, os.getpid())
    try:
        with open(tmp, "wb") as f:
            f.write(struct.pack("<Q", len(h)))
            f.write(h)
            for i in order:
                f.write(tensors[i][3])
        os.replace(tmp, path)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise Refuse("%s: cannot write: %s" % (path, e.strerror), EX_CANTCREAT)


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
                dt, shp, b = m.ckpt.tensor(t, name)
                dt, b = convert_dtype(dt, b, a.dtype, name)
            except Refuse as e:
                raise Refuse("%s: %s" % (m.path, e), e.code)
            tensors.append((prefix + name, dt, shp, b))
    write_safetensors(a.output, tensors, meta)
    nbytes = sum(len(t[3]) for t in tensors)
    print("%s: wrote %s: %s%d tensors, %.1f MB, sources %s, segment %s s" % (
        PROG, a.output, "bag of %d models, " % len(models) if bag else "", len(tensors),
        nbytes / 1e6, meta["stemsplit.sources"], meta["stemsplit.segment"]), file=sys.stderr)


class Parser(argparse.ArgumentParser):
    def error(self, message):
        self.print_usage(sys.stderr)
        print("%s: %s" % (PROG, message), file=sys.stderr)
        sys.exit(EX_USAGE)


def main(argv=None):
    ap = Parser(prog=PROG, description=__doc__.split("\n\n")[0],
                epilog="Details: docs/htdemucs-format.md")
    ap.add_argument("-o", "--output", required=True, help="output .safetensors file")
    ap.add_argument("inputs", nargs="+", metavar="IN.th", help="demucs checkpoint(s)")
    ap.add_argument("--weights", help="bag weight matrix: rows ';', values ','")
    ap.add_argument("--dtype", default="keep", choices=["keep", "f32", "f16", "bf16"],
                    help="tensor dtype in the output (default: as stored)")
    ap.add_argument("--name", help="stored as stemsplit.name")
    ap.add_argument("--version", action="version", version="%s %s" % (PROG, VERSION))
    a = ap.parse_args(argv)
    a.dtype = {"keep": "keep", "f32": "F32", "f16": "F16", "bf16": "BF16"}[a.dtype]
    try:
        run(a)
    except Refuse as e:
        print("%s: %s" % (PROG, e), file=sys.stderr)
        return e.code
    except MemoryError:
        print("%s: out of memory" % PROG, file=sys.stderr)
        return EX_IOERR
    return 0


if __name__ == "__main__":
    sys.exit(main())
