#!/usr/bin/env python3
"""make-roformer-bench.py - a RoFormer checkpoint of a chosen size with random
weights, for timing stemsplit against MSST (scripts/bench-msst.py).

  make-roformer-bench.py BASE.yaml OUTDIR [--set KEY=VALUE ...] [--seed N] [--ref .ref]

OUTDIR/config.yaml: the MSST config BASE with model.KEY = VALUE for each --set
(VALUE read as YAML), flash_attn false, use_amp false, inference.batch_size 1;
OUTDIR/model.ckpt: that model (BS-RoFormer, or Mel-Band RoFormer where the
config has num_bands) built by MSST's code with random weights (RMSNorm gains
random too, as in the test fixtures); OUTDIR/model.safetensors: converted with
scripts/convert-msst.py.  The mid-size pair of the RoFormer benchmark:

  make-roformer-bench.py .ref/msst/configs/viperx/model_bs_roformer_ep_317_sdr_12.9755.yaml \\
      bench/bs --set dim=128 --set depth=2
  make-roformer-bench.py .ref/msst/configs/KimberleyJensen/config_vocals_mel_band_roformer_kj.yaml \\
      bench/mel --set dim=128 --set depth=2

Needs torch and PyYAML and MSST's files under --ref (see make-roformer-fixtures.py).
"""
import argparse
import importlib.util
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def load(name, file):
    spec = importlib.util.spec_from_file_location(name, os.path.join(HERE, file))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("base", help="an MSST config (YAML)")
    ap.add_argument("out", help="output folder")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="model.KEY = VALUE")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--ref", default=os.path.join(ROOT, ".ref"))
    a = ap.parse_args(argv)
    if not os.path.isfile(a.base):
        ap.error("%s: no such config" % a.base)
    import torch
    import yaml
    mrf = load("make_roformer_fixtures", "make-roformer-fixtures.py")
    mods, _, _, conv = mrf.load_reference(os.path.abspath(a.ref))
    y = yaml.unsafe_load(open(a.base))
    for kv in a.set:
        if "=" not in kv:
            ap.error("--set %s: KEY=VALUE expected" % kv)
        k, v = kv.split("=", 1)
        if k not in y["model"]:
            ap.error("--set %s: the config has no model.%s" % (kv, k))
        y["model"][k] = yaml.safe_load(v)
    y["model"]["flash_attn"] = False
    y["training"]["use_amp"] = False
    y["inference"]["batch_size"] = 1
    arch = "mel_band_roformer" if "num_bands" in y["model"] else "bs_roformer"
    os.makedirs(a.out, exist_ok=True)
    text = ("# %s with %s, flash_attn false, use_amp false, inference.batch_size 1 "
            "(scripts/make-roformer-bench.py)\n" % (os.path.basename(a.base), " ".join(a.set) or "no changes")
            + yaml.dump(y))
    cfg = os.path.join(a.out, "config.yaml")
    with open(cfg, "w") as f:
        f.write(text)
    torch.manual_seed(a.seed)
    model = mrf.build(mods, arch, dict(y["model"]))
    mrf.randomize(model, a.seed)
    ckpt = os.path.join(a.out, "model.ckpt")
    torch.save(model.state_dict(), ckpt)
    n = sum(p.numel() for p in model.parameters())
    print("%s: %s, %.1f M parameters" % (a.out, arch, n / 1e6), file=sys.stderr)
    return conv.main(["-o", os.path.join(a.out, "model.safetensors"), cfg, ckpt])


if __name__ == "__main__":
    sys.exit(main())
