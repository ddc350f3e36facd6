#!/usr/bin/env python3
"""make-mdx23c-fixtures.py - reference outputs of MDX23C (TFC-TDF-Net v3) from the
reference implementation (ZFTurbo's Music-Source-Separation-Training, "MSST":
models/mdx23c_tfc_tdf_v3.py and utils/model_utils.py demix), for stemsplit's tests.

Needs torch, numpy and PyYAML, and MSST's files under --ref (default .ref: msst/;
pylib/ is put on the path as for the RoFormer fixtures).  Packages MSST imports
that are not needed here come from tests/fixtures/roformer/stubs/.

  make-mdx23c-fixtures.py [--ref .ref] [--out tests/fixtures/mdx23c] [CASE ...]
      the small fixtures: CASE/config.yaml, model.ckpt, mix.wav, ref.safetensors
  make-mdx23c-fixtures.py --full OUTDIR [--seconds 30] [--device cpu|cuda] [--set KEY=VALUE ...]
                          [NAME|CONFIG.yaml ...]
      the full-size configs (mdx23c_instvoc_hq: scripts/mdx23c-configs/
      model_2_stem_full_band_8k.yaml; mdx23c_drumsep_6stem: scripts/mdx23c-configs/
      drumsep_6stem.yaml), or any MDX23C config given by path (its file name less .yaml
      is its name), with random weights: OUTDIR/<name>/ as above.  --set model.KEY=VALUE
      (VALUE read as YAML) changes the config first, e.g. a mid-size network for the CPU:
        --set model.num_channels=32 --set model.growth=32

ref.safetensors holds F32 `stems` [S, C, L] (MSST's demix of mix.wav, per target),
`forward_in` [1, C, chunk] and `forward_out` [1, S, C, chunk] (one direct model call
on the first chunk demix feeds the model); the layout of tests/fixtures/roformer.
"""
import argparse
import importlib.util
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
STUBS = os.path.join(ROOT, "tests", "fixtures", "roformer", "stubs")
sys.path.insert(0, HERE)
import torchckpt  # noqa: E402,F401

_spec = importlib.util.spec_from_file_location("mrf", os.path.join(HERE, "make-roformer-fixtures.py"))
mrf = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mrf)          # yaml_text, write_wav_f32, write_ref, make_mix, first_chunk, ...

# ------------------------------------------------------------------ cases

# audio: n_fft, hop_length, dim_f (num_channels 2: the reference handles stereo only)
CASES = {
    # InstanceNorm + GELU (the released models' choice), 2 scales of 2 blocks, 2 sub-bands,
    # dim_f < n_fft/2+1
    # (zero padded bins), 2 stems, border reflect padding, last chunk zero padded
    "in_2scale_gelu": dict(
        seed=1, samples=7000, save="plain", n_fft=256, hop=64, dim_f=96, chunk=64 * 47,
        overlap=2,
        model=dict(act="gelu", bottleneck_factor=4, growth=4, norm="InstanceNorm",
                   num_blocks_per_scale=2, num_channels=8, num_scales=2, num_subbands=2,
                   scale=[2, 2]),
        instruments=["vocals", "other"], target=None),
    # BatchNorm with non-trivial running statistics + ReLU, 4 scales,
    # 4 stems, one sub-band, fp16 checkpoint, num_overlap 4
    "bn_4scale_relu": dict(
        seed=2, samples=5000, save="fp16", n_fft=256, hop=64, dim_f=128, chunk=64 * 47,
        overlap=4,
        model=dict(act="relu", bottleneck_factor=2, growth=4, norm="BatchNorm",
                   num_blocks_per_scale=1, num_channels=8, num_scales=4, num_subbands=1,
                   scale=[2, 2]),
        instruments=["drums", "bass", "other", "vocals"], target=None),
    # GroupNorm2 + ELU(0.5), scale [1, 2] (time kept), 4 sub-bands, one target (the
    # pipeline adds the residual), checkpoint wrapped as {"state_dict": ..., "epoch": 3}
    "gn_target_elu": dict(
        seed=3, samples=6000, save="state_dict", n_fft=512, hop=128, dim_f=256, chunk=128 * 23,
        overlap=2,
        model=dict(act="elu0.5", bottleneck_factor=4, growth=8, norm="GroupNorm2",
                   num_blocks_per_scale=1, num_channels=8, num_scales=2, num_subbands=4,
                   scale=[1, 2]),
        instruments=["vocals", "instrumental"], target="vocals"),
    # no norm (the reference's nn.Identity for any other name) + GELU, one scale of [2, 1],
    # 3 stems, a track shorter than 2*border (no border padding)
    "id_3stem": dict(
        seed=4, samples=4000, save="plain", n_fft=256, hop=64, dim_f=129, chunk=64 * 63,
        overlap=2,
        model=dict(act="gelu", bottleneck_factor=8, growth=6, norm="None",
                   num_blocks_per_scale=1, num_channels=6, num_scales=1, num_subbands=1,
                   scale=[2, 1]),
        instruments=["kick", "snare", "toms"], target=None),
}

FULL = {
    "mdx23c_instvoc_hq": "model_2_stem_full_band_8k.yaml",
    "mdx23c_drumsep_6stem": "drumsep_6stem.yaml",
}
FULL_DIR = os.path.join(HERE, "mdx23c-configs")


# ------------------------------------------------------------------ reference code

def load_reference(ref):
    msst, pylib = os.path.join(ref, "msst"), os.path.join(ref, "pylib")
    if not os.path.isdir(msst):
        sys.exit("%s missing: copy MSST's files there" % msst)
    sys.path[:0] = [STUBS, pylib, msst]
    spec = importlib.util.spec_from_file_location(
        "mdx23c_tfc_tdf_v3", os.path.join(msst, "models", "mdx23c_tfc_tdf_v3.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    import utils.model_utils as mu
    spec = importlib.util.spec_from_file_location("convert_msst",
                                                  os.path.join(HERE, "convert-msst.py"))
    conv = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conv)
    return mod, mu, conv


# ------------------------------------------------------------------ one case

def randomize(model, seed):
    """Norm parameters and BatchNorm statistics away from their identity defaults."""
    import torch
    g = torch.Generator().manual_seed(seed + 1000)
    with torch.no_grad():
        for name, mod in model.named_modules():
            if isinstance(mod, (torch.nn.BatchNorm2d, torch.nn.InstanceNorm2d, torch.nn.GroupNorm)):
                if mod.weight is not None:
                    mod.weight.copy_(torch.rand(mod.weight.shape, generator=g) + 0.5)
                    mod.bias.copy_(torch.randn(mod.bias.shape, generator=g) * 0.2)
                if isinstance(mod, torch.nn.BatchNorm2d):
                    mod.running_mean.copy_(torch.randn(mod.running_mean.shape, generator=g) * 0.3)
                    mod.running_var.copy_(torch.rand(mod.running_var.shape, generator=g) * 2 + 0.2)
                    mod.num_batches_tracked.fill_(1234)


def run_case(name, spec, out, mod, mu, conv, device="cpu", yaml_text=None):
    import numpy as np
    import torch
    import yaml
    from ml_collections import ConfigDict
    os.makedirs(out, exist_ok=True)
    sr = 44100
    if yaml_text is None:
        cfg = {"audio": {"chunk_size": spec["chunk"], "dim_f": spec["dim_f"],
                         "dim_t": spec["chunk"] // spec["hop"] + 1, "hop_length": spec["hop"],
                         "n_fft": spec["n_fft"], "num_channels": 2, "sample_rate": sr,
                         "min_mean_abs": 0.0},
               "model": spec["model"],
               "training": {"instruments": spec["instruments"],
                            "target_instrument": spec["target"], "use_amp": False},
               "inference": {"batch_size": 1, "num_overlap": spec["overlap"]}}
        yaml_text = ("# %s: stemsplit test fixture (scripts/make-mdx23c-fixtures.py)\n"
                     % name) + mrf.yaml_text(cfg)
    with open(os.path.join(out, "config.yaml"), "w") as f:
        f.write(yaml_text)
    config = ConfigDict(yaml.unsafe_load(yaml_text))
    torch.manual_seed(spec["seed"])
    model = mod.TFC_TDF_net(config)
    randomize(model, spec["seed"])
    model.eval()
    C = 2
    mix = mrf.make_mix(spec["seed"], C, spec["samples"], sr)
    chunk = config.inference.get("chunk_size", config.audio.chunk_size)
    # scale the last convolution so that the stems have about the mixture's level (the
    # network is linear in it): random weights give outputs far too loud or too quiet
    fin, wins, border, padded = mrf.first_chunk(mix, chunk, config.inference.num_overlap)
    with torch.inference_mode():
        y = model(fin[None])
    r = float(y.square().mean().sqrt() / fin.square().mean().sqrt())
    with torch.no_grad():
        model.final_conv[2].weight.mul_(0.5 / max(r, 1e-12))
    sd = model.state_dict()
    save = spec["save"]
    if save == "fp16":
        obj = {k: (v.half() if v.is_floating_point() else v) for k, v in sd.items()}
    elif save == "state_dict":
        obj = {"state_dict": sd, "epoch": 3}
    else:
        obj = sd
    ck = os.path.join(out, "model.ckpt")
    torch.save(obj, ck)
    loaded = torch.load(ck, map_location="cpu")
    if "state_dict" in loaded:
        loaded = loaded["state_dict"]
    model = mod.TFC_TDF_net(config)
    model.load_state_dict({k: (v.float() if v.is_floating_point() else v)
                           for k, v in loaded.items()})
    model.eval().to(device)
    mrf.write_wav_f32(os.path.join(out, "mix.wav"), mix, sr)
    res = mu.demix(config, model, mix, device, model_type="mdx23c", pbar=False)
    sources = mu.prefer_target_instrument(config)
    stems = np.stack([np.asarray(res[s], dtype=np.float32) for s in sources])
    with torch.inference_mode():
        fout = model(fin[None].to(device)).cpu()
    S = len(sources)
    fout = fout.reshape(1, S, C, -1).numpy()
    rms = lambda a: float(np.sqrt(np.mean(np.square(a, dtype=np.float64))))  # noqa: E731
    ratios = [rms(st) / rms(mix) for st in stems]
    print("%s: C=%d L=%d S=%d chunks=%d border=%d padded=%s stem/mix rms %s" % (
        name, C, mix.shape[1], S, len(wins), border, padded,
        " ".join("%.3f" % r for r in ratios)), file=sys.stderr)
    assert np.all(np.isfinite(stems)) and stems.shape == (S, C, mix.shape[1])
    assert all(r > 0.01 for r in ratios), ratios
    meta = {"sources": ",".join(sources), "border": str(border),
            "border_padded": "true" if padded else "false",
            "chunks": ";".join("%d,%d,%s" % w for w in wins),
            "torch": torch.__version__, "normalize": "false"}
    mrf.write_ref(os.path.join(out, "ref.safetensors"),
                  {"stems": stems, "forward_in": fin[None].numpy(), "forward_out": fout}, meta)
    mrf.check_converted(conv, out, loaded, dropped=lambda k: k.endswith("num_batches_tracked"))


def full(args, mod, mu, conv):
    import yaml
    for name in args.cases or list(FULL):
        if name.endswith(".yaml"):
            path, name = name, os.path.basename(name)[:-5]
        elif name in FULL:
            path = os.path.join(FULL_DIR, FULL[name])
        else:
            sys.exit("unknown full-size config %s (%s, or a .yaml path)" % (name, ", ".join(FULL)))
        y = yaml.unsafe_load(open(path).read())
        y["training"]["use_amp"] = False
        y["inference"]["batch_size"] = 1
        for kv in args.set:
            k, v = kv.split("=", 1)
            sec, key = k.split(".", 1)
            y[sec][key] = yaml.safe_load(v)
        text = ("# %s with use_amp false, inference.batch_size 1%s "
                "(scripts/make-mdx23c-fixtures.py --full)\n" % (
                    os.path.basename(path), "".join(", " + kv for kv in args.set))) + yaml.dump(y)
        spec = dict(seed=11, samples=args.seconds, save="plain")
        run_case(name, spec, os.path.join(args.full, name), mod, mu, conv,
                 device=args.device, yaml_text=text)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ref", default=os.path.join(ROOT, ".ref"))
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures", "mdx23c"))
    ap.add_argument("--full", metavar="OUTDIR", help="the full-size configs instead")
    ap.add_argument("--seconds", type=float, default=30.0, help="--full: mixture length")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="--full: change the config first")
    ap.add_argument("cases", nargs="*", help="default: all (%s; --full: %s)" % (
        ", ".join(CASES), ", ".join(FULL)))
    args = ap.parse_args()
    import torch
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    mod, mu, conv = load_reference(os.path.abspath(args.ref))
    if args.full:
        args.seconds = int(round(args.seconds * 44100))
        full(args, mod, mu, conv)
        return
    for name in args.cases or list(CASES):
        run_case(name, CASES[name], os.path.join(args.out, name), mod, mu, conv)


if __name__ == "__main__":
    main()
