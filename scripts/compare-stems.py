#!/usr/bin/env python3
"""compare-stems.py REF.safetensors OUTDIR [--tol 1e-4] [--ext wav] [--against-dir DIR] [--key stems]

Compare stems written by stemsplit (OUTDIR/<stem>.wav, 32-bit float WAV) with
the reference tensor `stems` [S, C, L] of a fixture's ref.safetensors (made by
scripts/make-reference.py).  Prints the relative L2 error ||out - ref|| / ||ref||
per stem and exits 1 if any exceeds the tolerance.  --against-dir DIR compares
with DIR's stems of the same names instead (e.g. the default precision against
an fp32 run; the reference then only gives the names and shapes).  --key names
another reference tensor of the same shape (e.g. `wiener` of the LarsNet
fixtures).  Python standard library only.
"""
import argparse, array, json, math, os, struct, sys


def read_safetensors(path, name):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        hdr = json.loads(f.read(n))
        t = hdr[name]
        if t["dtype"] != "F32":
            raise SystemExit("%s: %s is %s, expected F32" % (path, name, t["dtype"]))
        b, e = t["data_offsets"]
        f.seek(8 + n + b)
        a = array.array("f")
        a.frombytes(f.read(e - b))
    return a, t["shape"], hdr.get("__metadata__", {})


def read_wav_f32(path):
    """-> (channels, frames, array of interleaved floats)"""
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise SystemExit("%s: not a WAV file" % path)
    pos, fmt, payload = 12, None, None
    while pos + 8 <= len(data):
        cid, size = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
        body = data[pos + 8:pos + 8 + size]
        if cid == b"fmt ":
            fmt = struct.unpack("<HHIIHH", body[:16])
        elif cid == b"data":
            payload = body
        pos += 8 + size + (size & 1)
    if not fmt or payload is None:
        raise SystemExit("%s: no fmt or data chunk" % path)
    tag, ch, _, _, _, bits = fmt
    if bits != 32 or tag not in (3, 0xFFFE):
        raise SystemExit("%s: not 32-bit float (format %d, %d bits); run stemsplit with --sample-format f32"
                         % (path, tag, bits))
    a = array.array("f")
    a.frombytes(payload[:len(payload) // 4 * 4])
    return ch, len(a) // ch, a


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("ref")
    ap.add_argument("outdir")
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--ext", default="wav")
    ap.add_argument("--against-dir", metavar="DIR",
                    help="compare with the stems in DIR (e.g. an fp32 run) instead of the reference's")
    ap.add_argument("--key", default="stems", help="the reference tensor [S, C, L] (default stems)")
    a = ap.parse_args()
    ref, shape, meta = read_safetensors(a.ref, a.key)
    S, C, L = shape
    sources = meta.get("sources", "").split(",")
    worst, bad = 0.0, 0
    for s, name in enumerate(sources):
        ch, n, out = read_wav_f32(os.path.join(a.outdir, "%s.%s" % (name, a.ext)))
        if ch != C or n != L:
            print("FAIL %s: %d ch x %d frames, reference %d x %d" % (name, ch, n, C, L))
            bad += 1
            continue
        if a.against_dir:
            rc, rn, other = read_wav_f32(os.path.join(a.against_dir, "%s.%s" % (name, a.ext)))
            if rc != C or rn != L:
                print("FAIL %s: %s has %d ch x %d frames" % (name, a.against_dir, rc, rn))
                bad += 1
                continue
        num = den = 0.0
        for c in range(C):
            base = (s * C + c) * L
            r = other[c::C] if a.against_dir else ref[base:base + L]
            o = out[c::C]
            num += math.fsum((x - y) * (x - y) for x, y in zip(o, r))
            den += math.fsum(y * y for y in r)
        rel = math.sqrt(num / den) if den > 0 else math.sqrt(num)
        worst = max(worst, rel)
        ok = rel <= a.tol
        bad += not ok
        print("%s %s: relative L2 %.3g (tolerance %g)" % ("PASS" if ok else "FAIL", name, rel, a.tol))
    print("worst relative L2 %.3g over %d stems of %d frames" % (worst, S, L))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
