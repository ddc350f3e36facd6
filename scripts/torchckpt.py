"""torchckpt.py - read torch checkpoints without torch, write safetensors.
Python 3 standard library only.  Shared by the converters in this folder
(convert-demucs.py, convert-msst.py, convert-larsnet.py,
convert-deepfilternet.py): the checkpoint reader, dtype conversion, the
safetensors writer, and their common command line (-o, --dtype, --name,
--version; usage errors exit 64) and state-dict unwrapping.

Checkpoints are torch's zip serialization (torch >= 1.6).  The pickle inside
is read with a restricted unpickler: only an explicit allow-list of globals is
resolved, each to an inert stand-in (plain containers, fractions, tensor
references); a converter may add its own stand-ins through `find_extra`.
Nothing from the file is ever called, so converting never runs code from it.
Anything else is refused (Refuse, exit status 65).
"""
import argparse
import array
import collections
import fractions
import io
import itertools
import json
import os
import pickle
import struct
import sys
import zipfile

import miniyaml

EX_USAGE, EX_DATAERR, EX_NOINPUT, EX_CANTCREAT, EX_IOERR = 64, 65, 66, 73, 74


class Refuse(Exception):
    """Input refused: message for the user, exit status."""

    def __init__(self, msg, code=EX_DATAERR):
        super().__init__(msg)
        self.code = code



# ------------------------------------------------------------------ unpickling
# Stand-ins for the allowed globals.  None of them does anything but record
# its arguments (after type checks).

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



class RestrictedUnpickler(pickle.Unpickler):
    """Resolves only allow-listed globals, to inert stand-ins.  find_extra(module,
    name), if given, is asked first: it returns a stand-in or None."""

    def __init__(self, f, storages, find_extra=None):
        super().__init__(f)
        self.storages = storages          # key -> Storage
        self.find_extra = find_extra

    def find_class(self, module, name):
        if self.find_extra is not None:
            extra = self.find_extra(module, name)
            if extra is not None:
                return extra
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

    def __init__(self, path, find_extra=None):
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
            self.obj = RestrictedUnpickler(io.BytesIO(data), self.storages, find_extra).load()
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

    def tensor_as(self, t, name, want):
        """tensor() with the bytes in dtype `want` ("keep": as stored)."""
        dt, shp, b = self.tensor(t, name)
        dt, b = convert_dtype(dt, b, want, name)
        return dt, shp, b


def numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def state_dict(ck, path, wrappers, prefixes):
    """The state dict of checkpoint `ck` (its top-level dict of tensors, else
    the first of `wrappers` that holds a dict), every key a non-empty string
    and every value a TensorRef, with a prefix of `prefixes` that all keys
    share taken off (up to four times: module.model.)."""
    obj = ck.obj
    if not isinstance(obj, dict):
        raise Refuse("%s: holds a %s, not a state dict" % (path, type(obj).__name__))
    state = obj
    if not (obj and all(isinstance(v, TensorRef) for v in obj.values())):
        for w in wrappers:
            if isinstance(obj.get(w), dict):
                state = obj[w]
                break
        else:
            raise Refuse("%s: not a state dict (no tensors at the top, nor under %s)"
                         % (path, ", ".join(wrappers)))
    if not state:
        raise Refuse("%s: the state dict is empty" % path)
    for k, v in state.items():
        if not isinstance(k, str) or not k:
            raise Refuse("%s: state dict has a non-string key %r" % (path, k))
        if not isinstance(v, TensorRef):
            raise Refuse("%s: state entry %s is a %s, not a tensor" % (path, k, type(v).__name__))
    for _ in range(4):
        for pre in prefixes:
            if all(k.startswith(pre) and len(k) > len(pre) for k in state):
                state = {k[len(pre):]: v for k, v in state.items()}
                break
        else:
            break
    return state


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


# ------------------------------------------------------------------ metadata

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


# ------------------------------------------------------------------ config files

def pos_int(v, what, path, zero_ok=False):
    """v when it is a positive integer (zero_ok: or 0); a Refuse naming the
    file and the key `what` otherwise."""
    if not _is_int(v) or v < 0 or v == 0 and not zero_ok:
        raise Refuse("%s: %s=%r: expected a %s integer" % (
            path, what, v, "non-negative" if zero_ok else "positive"))
    return v


def read_yaml(path):
    """A YAML config file (scripts/miniyaml.py) that must be a mapping."""
    try:
        y = miniyaml.load_file(path)
    except FileNotFoundError:
        raise Refuse("%s: no such file" % path, EX_NOINPUT)
    except UnicodeDecodeError:
        raise Refuse("%s: not a UTF-8 text file" % path)
    except OSError as e:
        raise Refuse("%s: cannot read: %s" % (path, e.strerror), EX_NOINPUT)
    except miniyaml.YAMLError as e:
        raise Refuse("%s: %s" % (path, e))
    if not isinstance(y, dict):
        raise Refuse("%s: not a YAML mapping" % path)
    return y


# ------------------------------------------------------------------ command line

class _Parser(argparse.ArgumentParser):
    """argparse with sysexits: a usage error prints the usage and exits 64."""

    def error(self, message):
        self.print_usage(sys.stderr)
        print("%s: %s" % (self.prog, message), file=sys.stderr)
        sys.exit(EX_USAGE)


def parser(prog, doc, epilog):
    """A converter's command line: its description is the first paragraph of
    `doc`; -o/--output is added here, the inputs and other options by the
    caller, then parse_args() adds the common options last."""
    ap = _Parser(prog=prog, description=doc.split("\n\n")[0], epilog=epilog)
    ap.add_argument("-o", "--output", required=True, help="output .safetensors file")
    return ap


def parse_args(ap, argv, version):
    """Adds --dtype, --name and --version to `ap` and parses argv; a.dtype is
    then a safetensors dtype or "keep"."""
    ap.add_argument("--dtype", default="keep", choices=["keep", "f32", "f16", "bf16"],
                    help="tensor dtype in the output (default: as stored)")
    ap.add_argument("--name", help="stored as stemsplit.name")
    ap.add_argument("--version", action="version", version="%s %s" % (ap.prog, version))
    a = ap.parse_args(argv)
    a.dtype = {"keep": "keep", "f32": "F32", "f16": "F16", "bf16": "BF16"}[a.dtype]
    return a


def run_main(prog, run, a, message=str):
    """run(a) and the exit status: 0, a Refuse's code after printing
    'prog: message(e)', or 74 when out of memory."""
    try:
        run(a)
    except Refuse as e:
        print("%s: %s" % (prog, message(e)), file=sys.stderr)
        return e.code
    except MemoryError:
        print("%s: out of memory" % prog, file=sys.stderr)
        return EX_IOERR
    return 0
