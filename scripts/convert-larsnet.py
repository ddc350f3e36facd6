#!/usr/bin/env python3
"""convert-larsnet.py - convert LarsNet's five U-Net checkpoints (polimi-ispl/larsnet)
to one stemsplit model file (.safetensors).  Python 3 standard library only.

  convert-larsnet.py -o OUT.safetensors CONFIG.yaml KICK.pth SNARE.pth TOMS.pth
                     HIHAT.pth CYMBALS.pth [--dtype keep|f32|f16|bf16] [--name NAME]

CONFIG.yaml is LarsNet's config.yaml: global.sr, the stems in the order of
inference_models (kick, snare, toms, hihat, cymbals as released) and each
stem's F (frequency bins the U-Net sees) and T (frames per block).  The
reference's STFT is n_fft 4096, hop 1024 (UNetUtils's defaults, not in the
config); global.n_fft and global.hop_length, where present, override them (the
test fixtures use a small STFT).  Other keys (training settings) are ignored,
as convert-msst.py ignores what it does not use.

Each checkpoint is torch's zip format holding one UNet's state dict, under
`model_state_dict` as released, or `state_dict`, `state`, or bare.  It is read
with torchckpt.py's restricted unpickler: nothing from the file is ever called.
The tensors are written as `<stem>.<state dict name>` (BatchNorm's
num_batches_tracked dropped); the channel widths follow from the shapes.
Metadata: stemsplit.architecture=larsnet, larsnet.n_fft/hop/F/T
(models/larsnet/README.md).

Exit status: 0 ok, 64 usage, 65 bad or unsupported input, 66 input missing,
73 cannot create output, 74 I/O error.
"""
import fractions
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torchckpt import (Refuse, Checkpoint, numel, state_dict,  # noqa: E402
                       read_yaml, pos_int, write_safetensors, fmt_value, parser, parse_args, run_main)

VERSION = "1.0"
PROG = "convert-larsnet.py"
STEMS = ("kick", "snare", "toms", "hihat", "cymbals")
STATE_WRAPPERS = ("model_state_dict", "state_dict", "state")
STATE_PREFIXES = ("module.", "model.")
CHANNELS = 2          # UNet(input_size=(2, F, T)): LarsNet is stereo
DEPTH = 6             # enc1..enc6, dec1..dec6
BN = ("weight", "bias", "running_mean", "running_var")


class Config:
    def __init__(self, path):
        self.path = path
        y = read_yaml(path)
        g = y.get("global")
        if not isinstance(g, dict) or "sr" not in g:
            raise Refuse("%s: global.sr missing" % path)
        self.sr = pos_int(g["sr"], "global.sr", path)
        self.n_fft = pos_int(g.get("n_fft", 4096), "global.n_fft", path)
        self.hop = pos_int(g.get("hop_length", self.n_fft // 4), "global.hop_length", path)
        if self.n_fft % 2 or self.hop > self.n_fft:
            raise Refuse("%s: n_fft %d / hop %d: need an even n_fft and hop <= n_fft"
                         % (path, self.n_fft, self.hop))
        im = y.get("inference_models")
        if not isinstance(im, dict):
            raise Refuse("%s: inference_models missing" % path)
        self.stems = list(im.keys())
        if tuple(self.stems) != STEMS:
            raise Refuse("%s: inference_models lists %s; LarsNet's stems are %s in this order"
                         % (path, ",".join(map(str, self.stems)), ",".join(STEMS)))
        ft = set()
        for s in STEMS:
            sec = y.get(s)
            if not isinstance(sec, dict) or "F" not in sec or "T" not in sec:
                raise Refuse("%s: %s.F or %s.T missing" % (path, s, s))
            ft.add((pos_int(sec["F"], s + ".F", path), pos_int(sec["T"], s + ".T", path)))
        if len(ft) != 1:
            raise Refuse("%s: the stems' F and T differ (%s): one value for all five is supported"
                         % (path, sorted(ft)))
        self.F, self.T = ft.pop()
        step = 1 << DEPTH
        if self.F % step or self.T % step:
            raise Refuse("%s: F=%d and T=%d must be multiples of %d (six stride-2 layers)"
                         % (path, self.F, self.T, step))
        if self.F > self.n_fft // 2 + 1:
            raise Refuse("%s: F=%d exceeds the %d bins of n_fft %d"
                         % (path, self.F, self.n_fft // 2 + 1, self.n_fft))


def load_state(path):
    ck = Checkpoint(path)
    return ck, state_dict(ck, path, STATE_WRAPPERS, STATE_PREFIXES)


def expected(cfg, state, path):
    """name -> shape of every tensor of one UNet; widths from enc*.conv.weight."""
    w = [CHANNELS]
    for k in range(1, DEPTH + 1):
        t = state.get("enc%d.conv.weight" % k)
        if t is None:
            raise Refuse("%s: tensor enc%d.conv.weight missing: not a LarsNet UNet" % (path, k))
        if len(t.size) != 4 or not t.size[0] > 0:
            raise Refuse("%s: tensor enc%d.conv.weight is %s: expected [out, in, 5, 5]"
                         % (path, k, list(t.size)))
        w.append(t.size[0])
    want = {"input_norm." + b: [cfg.F] for b in BN}
    for k in range(1, DEPTH + 1):
        want["enc%d.conv.weight" % k] = [w[k], w[k - 1], 5, 5]
        want["enc%d.conv.bias" % k] = [w[k]]
        for b in BN:
            want["enc%d.bn.%s" % (k, b)] = [w[k]]
    for k in range(1, DEPTH + 1):
        cin = w[DEPTH] if k == 1 else 2 * w[DEPTH + 1 - k]
        cout = w[DEPTH - k]
        want["dec%d.conv_trans.weight" % k] = [cin, cout, 5, 5]
        want["dec%d.conv_trans.bias" % k] = [cout]
        for b in BN:
            want["dec%d.bn.%s" % (k, b)] = [cout]
    want["mask_layer.0.weight"] = [CHANNELS, CHANNELS, 4, 4]
    want["mask_layer.0.bias"] = [CHANNELS]
    return want, w


def check_state(cfg, path, state):
    want, widths = expected(cfg, state, path)
    for name in state:
        if name not in want and not name.endswith(".num_batches_tracked"):
            raise Refuse("%s: unexpected tensor %s: not a LarsNet UNet" % (path, name))
    for name, shape in want.items():
        t = state.get(name)
        if t is None:
            raise Refuse("%s: tensor %s missing" % (path, name))
        if list(t.size) != shape:
            raise Refuse("%s: tensor %s is %s; expected %s (config F=%d, widths %s)"
                         % (path, name, list(t.size), shape, cfg.F, widths[1:]))
    return want, widths


def run(a):
    cfg = Config(a.config)
    tensors, widths0, params = [], None, 0
    for stem, path in zip(STEMS, a.checkpoints):
        try:
            ck, state = load_state(path)
        except Refuse as e:
            if str(e).startswith(path):
                raise
            raise Refuse("%s: %s" % (path, e), e.code)
        want, widths = check_state(cfg, path, state)
        if widths0 is not None and widths != widths0:
            raise Refuse("%s: channel widths %s differ from the kick model's %s"
                         % (path, widths[1:], widths0[1:]))
        widths0 = widths
        for name in want:
            try:
                dt, shp, b = ck.tensor_as(state[name], name, a.dtype)
            except Refuse as e:
                raise Refuse("%s: %s" % (path, e), e.code)
            tensors.append(("%s.%s" % (stem, name), dt, shp, b))
            params += numel(shp)
    meta = {
        "stemsplit.architecture": "larsnet",
        "stemsplit.sources": ",".join(STEMS),
        "stemsplit.samplerate": str(cfg.sr),
        "stemsplit.channels": str(CHANNELS),
        "stemsplit.segment": fmt_value(fractions.Fraction(cfg.T * cfg.hop, cfg.sr)),
        "stemsplit.converter": "%s %s" % (PROG, VERSION),
        "larsnet.n_fft": str(cfg.n_fft),
        "larsnet.hop": str(cfg.hop),
        "larsnet.F": str(cfg.F),
        "larsnet.T": str(cfg.T),
        "larsnet.widths": fmt_value(widths0[1:]),
    }
    if a.name is not None:
        meta["stemsplit.name"] = a.name
    write_safetensors(a.output, tensors, meta)
    print("%s: wrote %s: larsnet, %d tensors, %.1f MB, widths %s, n_fft %d, hop %d, F %d, T %d"
          % (PROG, a.output, len(tensors), sum(len(t[3]) for t in tensors) / 1e6,
             meta["larsnet.widths"], cfg.n_fft, cfg.hop, cfg.F, cfg.T), file=sys.stderr)


def main(argv=None):
    ap = parser(PROG, __doc__, "Details: models/larsnet/README.md")
    ap.add_argument("config", metavar="CONFIG.yaml", help="LarsNet's config.yaml")
    ap.add_argument("checkpoints", metavar="STEM.pth", nargs="+",
                    help="the five checkpoints: kick snare toms hihat cymbals")
    a = parse_args(ap, argv, VERSION)
    if len(a.checkpoints) != len(STEMS):
        ap.error("need five checkpoints (%s), got %d" % (" ".join(STEMS), len(a.checkpoints)))
    return run_main(PROG, run, a)


if __name__ == "__main__":
    sys.exit(main())
