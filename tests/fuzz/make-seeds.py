#!/usr/bin/env python3
"""make-seeds.py - regenerate the safetensors and template seeds in corpus/.

Run from anywhere: python3 tests/fuzz/make-seeds.py.  The audio seeds come
from make-audio-seeds.c (libsndfile writes every container it knows)."""
import json, os, struct

here = os.path.dirname(os.path.abspath(__file__))

def out(kind, name, data):
    d = os.path.join(here, "corpus", kind)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)

def st(tensors, meta=None, pad=True):
    """tensors: list of (name, dtype, shape, bytes)."""
    hdr, blob = {}, b""
    if meta is not None:
        hdr["__metadata__"] = meta
    for name, dt, shape, data in tensors:
        hdr[name] = {"dtype": dt, "shape": shape, "data_offsets": [len(blob), len(blob) + len(data)]}
        blob += data
    h = json.dumps(hdr, separators=(",", ":")).encode()
    if pad:
        h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + blob

def f32(*v): return struct.pack("<%df" % len(v), *v)

ident = {"stemsplit.architecture": "identity", "stemsplit.sources": "a,b", "stemsplit.samplerate": "44100",
         "stemsplit.channels": "2", "stemsplit.segment": "39/5"}
out("st_header", "identity", st([("gain", "F32", [2], f32(1, 1))], ident))
out("st_header", "identity_pad", st([("gain", "F32", [2], f32(1, 0.5))], dict(ident, **{"identity.pad": "segment"})))
masks = [1.0 if i < 5 else 0.0 for i in range(9)] + [0.0 if i < 5 else 1.0 for i in range(9)]
band = {"stemsplit.architecture": "bandsplit", "stemsplit.sources": "low,high", "stemsplit.samplerate": "8000",
        "stemsplit.channels": "1", "stemsplit.segment": "0.5", "bandsplit.n_fft": "16", "bandsplit.hop": "4"}
out("st_header", "bandsplit", st([("masks", "F32", [2, 9], f32(*masks))], band))
out("st_header", "f16_bf16", st([("h", "F16", [2, 2], struct.pack("<4H", 0x3c00, 0x7c00, 0x0001, 0xfc00)),
                                 ("b", "BF16", [3], struct.pack("<3H", 0x3f80, 0x7fc0, 0x8000)),
                                 ("s", "F32", [], f32(2.5)), ("e", "F32", [0, 3], b"")],
                                {"x.double": "2.5", "x.frac": "-7.25", "x.bool": "false", "x.int": "-12"}))
out("st_header", "empty", st([]))
out("st_header", "meta_only", st([], {"k": "v", "\u00e9": "\\\"q\""}))
out("st_header", "nested_bad", struct.pack("<Q", 16) + b'{"a":{"b":[[1]]}}')
out("st_header", "unpadded", st([("w", "F32", [1, 1, 1], f32(3))], None, pad=False))
out("st_header", "htdemucs_meta", st([("w", "F32", [1], f32(0))],
    {"stemsplit.architecture": "htdemucs", "stemsplit.sources": "drums,bass,other,vocals",
     "stemsplit.samplerate": "44100", "stemsplit.channels": "2", "stemsplit.segment": "39/5",
     "htdemucs.channels": "48", "htdemucs.depth": "4", "htdemucs.nfft": "4096"}))

# st_tensors: compact descriptions (see fuzz_st_tensors.c)
out("st_tensors", "identity", bytes([1, 1 | 4, 2, 2, 16, 0, 4, 0, 1, 0,   0, 0, 1, 0x01, 0x40, 0, 0, 0, 0, 0, 0, 0, 0]) + f32(1, 1))
out("st_tensors", "bandsplit", bytes([1, 2 | 4, 2, 1, 16, 0, 4, 0, 32, 0,  1, 0, 2, 0x00, 0x40, 0x01, 0x40, 0, 0, 0, 0, 0, 0, 0, 0]) + f32(*masks))
out("st_tensors", "three", bytes([3, 0, 0, 0, 0, 0, 0, 0, 0, 0] + [2, 0, 1, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0] * 3) + bytes(48))
out("st_tensors", "raw_offsets", bytes([2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 0x80, 1, 2, 0, 0, 0, 0, 0, 8, 0, 0, 0,
                                        4, 0x81, 1, 2, 0, 4, 0, 0, 0, 8, 0, 0, 0]) + bytes(8))

# template: template \0 track \0 stem \0 ext \0 model \0 dir \0 size-byte
def tpl(name, *parts, size=255):
    out("template", name, b"\0".join(p.encode() for p in parts) + b"\0" + bytes([size]))
tpl("default", "{track}/{stem}.{ext}", "song", "vocals", "wav", "htdemucs", "")
tpl("dir", "{dir}/{track}/{model}-{stem}.{ext}", "a b", "no_vocals", "flac", "m", "sub/dir")
tpl("braces", "{{x}}/{stem}}}.{ext}", "t", "s", "wav", "m", "")
tpl("dots", "{track}/../{stem}", "..", ".", "", "", "/abs")
tpl("small", "{track}{track}{track}/{stem}", "long-track-name", "s", "wav", "m", "d", size=3)
tpl("bad", "{nope}/{stem", "t", "s", "e", "m", "d")
