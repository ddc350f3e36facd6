#!/usr/bin/env python3
"""make-bandsplit.py - write a stemsplit model file (.safetensors) that needs no
training: a fixed crossover filter bank ("bandsplit") or a test model
("identity").  Python 3 standard library only.  Format: docs/model-format.md.

  make-bandsplit.py -o models/bandsplit/bandsplit4.safetensors
  make-bandsplit.py -o low-high.safetensors --crossovers 500
  make-bandsplit.py -o id.safetensors --arch identity --sources a,b --gains 1,0.5

bandsplit: tensor `masks` [S, n_fft/2+1] F32, one mask per source over the STFT
bins, raised-cosine crossovers (in log frequency, +-1/3 octave by default).
Every value is a multiple of 2^-24, so the masks are exact in float32 and sum
to exactly 1.0 at every bin in any order of float32 addition (checked).

identity: tensor `gain` [S] F32; the engine computes y[s] = gain[s] * x.
"""
import argparse
import json
import math
import re
import struct
import sys

Q = float(1 << 24)  # masks are multiples of 1/Q: exact float32, exact sums


def f32(x):
    """Round a Python float to the nearest float32."""
    return struct.unpack("<f", struct.pack("<f", x))[0]


def num_str(x):
    """200.0 -> '200', 0.5 -> '0.5'."""
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def parse_list(text, what, conv):
    try:
        vals = [conv(v) for v in text.split(",")]
    except ValueError:
        raise SystemExit("make-bandsplit: bad %s list '%s'" % (what, text))
    return vals


def upper_weight(freq, fc, width):
    """Share of bin `freq` that goes above crossover `fc`: 0 below fc/2^width,
    1 above fc*2^width, a raised cosine in log2 frequency in between."""
    if freq <= 0.0:
        return 0.0
    x = math.log2(freq / fc)
    if x <= -width:
        return 0.0
    if x >= width:
        return 1.0
    return 0.5 - 0.5 * math.cos(math.pi * (x + width) / (2.0 * width))


def band_masks(crossovers, samplerate, n_fft, width):
    """masks[s][bin]: S = len(crossovers) + 1 complementary masks."""
    n_bins = n_fft // 2 + 1
    # u[k][b]: quantised share above crossover k; non-increasing in k because
    # the crossovers increase and rounding is monotone, so every mask >= 0.
    u = [[round(upper_weight(b * samplerate / n_fft, fc, width) * Q) / Q for b in range(n_bins)]
         for fc in crossovers]
    s = len(crossovers) + 1
    masks = []
    for k in range(s):
        lo = u[k - 1] if k > 0 else [1.0] * n_bins
        hi = u[k] if k < s - 1 else [0.0] * n_bins
        masks.append([lo[b] - hi[b] for b in range(n_bins)])
    return masks


def verify_masks(masks):
    """Each value in [0,1] and exact in float32; float32 sums == 1.0."""
    n_bins = len(masks[0])
    for b in range(n_bins):
        col = [m[b] for m in masks]
        for v in col:
            if not (0.0 <= v <= 1.0) or f32(v) != v:
                raise SystemExit("make-bandsplit: internal error: mask value %r at bin %d" % (v, b))
        for order in (col, col[::-1]):
            acc = 0.0
            for v in order:
                acc = f32(acc + v)
            if acc != 1.0:
                raise SystemExit("make-bandsplit: internal error: masks sum to %r at bin %d" % (acc, b))


def write_safetensors(path, metadata, tensors):
    """tensors: list of (name, shape, flat float list), written as F32."""
    header = {"__metadata__": metadata}
    blobs = []
    offset = 0
    for name, shape, values in tensors:
        blob = struct.pack("<%df" % len(values), *values)
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
        blobs.append(blob)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)  # pad so the data area is 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)


def main():
    ap = argparse.ArgumentParser(description="Write a bandsplit or identity stemsplit model.")
    ap.add_argument("-o", dest="out", required=True, help="output .safetensors file")
    ap.add_argument("--arch", choices=("bandsplit", "identity"), default="bandsplit")
    ap.add_argument("--crossovers", default="200,1000,5000", help="bandsplit crossover frequencies, Hz")
    ap.add_argument("--width", type=float, default=1.0 / 3.0, help="bandsplit crossover half-width, octaves")
    ap.add_argument("--sources", help="source names (identity default: drums,bass,other,vocals)")
    ap.add_argument("--gains", help="identity: per-source gains (default all 1)")
    ap.add_argument("--segment", default="10", help="segment seconds: integer, decimal or fraction like 39/5")
    ap.add_argument("--samplerate", type=int, default=44100)
    ap.add_argument("--channels", type=int, default=2)
    ap.add_argument("--n-fft", type=int, default=4096)
    ap.add_argument("--hop", type=int, default=1024)
    a = ap.parse_args()

    if a.samplerate <= 0 or a.channels <= 0:
        raise SystemExit("make-bandsplit: samplerate and channels must be positive")
    if not re.fullmatch(r"[0-9]+(\.[0-9]+|/[1-9][0-9]*)?", a.segment):
        raise SystemExit("make-bandsplit: bad --segment '%s' (want e.g. 10, 7.8 or 39/5)" % a.segment)
    meta = {
        "stemsplit.architecture": a.arch,
        "stemsplit.sources": "",
        "stemsplit.samplerate": str(a.samplerate),
        "stemsplit.channels": str(a.channels),
        "stemsplit.segment": a.segment,
    }

    if a.arch == "identity":
        sources = (a.sources or "drums,bass,other,vocals").split(",")
        gains = parse_list(a.gains, "gains", float) if a.gains else [1.0] * len(sources)
        if len(gains) != len(sources):
            raise SystemExit("make-bandsplit: %d gains for %d sources" % (len(gains), len(sources)))
        tensors = [("gain", [len(sources)], gains)]
    else:
        xo = parse_list(a.crossovers, "crossovers", float)
        if any(not (0 < f < a.samplerate / 2) for f in xo) or any(b <= c for c, b in zip(xo, xo[1:])):
            raise SystemExit("make-bandsplit: crossovers must increase and lie in (0, samplerate/2)")
        if a.n_fft < 2 or a.n_fft % 2 or a.hop <= 0 or a.width <= 0:
            raise SystemExit("make-bandsplit: --n-fft must be even >= 2, --hop and --width positive")
        n = len(xo) + 1
        default = ["low", "lowmid", "highmid", "high"] if n == 4 else ["band%d" % (i + 1) for i in range(n)]
        sources = a.sources.split(",") if a.sources else default
        if len(sources) != n:
            raise SystemExit("make-bandsplit: %d sources for %d bands" % (len(sources), n))
        masks = band_masks(xo, a.samplerate, a.n_fft, a.width)
        verify_masks(masks)
        meta["bandsplit.crossovers"] = ",".join(num_str(f) for f in xo)
        meta["bandsplit.n_fft"] = str(a.n_fft)
        meta["bandsplit.hop"] = str(a.hop)
        tensors = [("masks", [n, a.n_fft // 2 + 1], [v for m in masks for v in m])]

    if len(set(sources)) != len(sources) or any(not s or "," in s for s in sources):
        raise SystemExit("make-bandsplit: source names must be unique and non-empty")
    meta["stemsplit.sources"] = ",".join(sources)
    write_safetensors(a.out, meta, tensors)
    return 0


if __name__ == "__main__":
    sys.exit(main())
