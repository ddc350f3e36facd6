#!/usr/bin/env python3
"""bench-deepfilternet.py - time DeepFilterNet3's PyTorch reference on noise, for
comparison with stemsplit on the same machine:

  python3 scripts/dfn-devref.py --full --out build/dfn-full --seconds 1
  sox -n -r 48000 -c 1 -b 16 build/noise20.wav synth 20 pinknoise vol 0.3
  /usr/bin/time -f %e ./stemsplit -q -m build/dfn-full/model.safetensors -d cpu -j 1 -o build/sp build/noise20.wav
  python3 scripts/bench-deepfilternet.py --model build/dfn-full --seconds 20 --threads 1

Times enhance()'s work on the reference side: the features (numpy ports of
libDF, scripts/dfn-devref.py), DfNet.forward (random weights, the model folder's
config.ini) and the synthesis; decoding and writing files are not included.
Prints every repetition; take the fastest.
"""
import argparse
import importlib.util
import os
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ref", default=".ref/dfn/DeepFilterNet")
    ap.add_argument("--model", default="build/dfn-full", help="a folder made by dfn-devref.py --full")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    spec = importlib.util.spec_from_file_location("devref", os.path.join(HERE, "dfn-devref.py"))
    d = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(d)
    d.stub_modules(a.ref)
    from df.config import config
    config.load(os.path.join(a.model, "config.ini"), config_must_exist=True)
    import df.deepfilternet3 as D
    from df.model import ModelParams
    from df.modules import erb_fb
    from df.utils import get_norm_alpha
    p = ModelParams()
    w = d.erb_widths(p.sr, p.fft_size, p.nb_erb)
    model = D.DfNet(erb_fb(w, p.sr), erb_fb(w, p.sr, inverse=True)).eval()
    L = int(a.seconds * p.sr)
    x = (np.random.RandomState(0).randn(1, L) * 0.1).astype(np.float32)
    alpha = get_norm_alpha(False)
    for _ in range(a.reps):
        t0 = time.time()
        xp = np.concatenate([x, np.zeros((1, p.fft_size), np.float32)], axis=1)
        s = d.analysis(xp, p.fft_size, p.hop_size)
        ef = torch.from_numpy(d.erb_feat(s, w, alpha)).unsqueeze(1)
        sf = torch.view_as_real(torch.from_numpy(d.unit_norm(s[..., :p.nb_df], alpha))).unsqueeze(1)
        sp = torch.view_as_real(torch.from_numpy(s)).unsqueeze(1)
        t1 = time.time()
        with torch.no_grad():
            enh = model(sp.clone(), ef, sf)[0]
        t2 = time.time()
        d.synthesis(torch.view_as_complex(enh.squeeze(1).contiguous()).numpy(), p.fft_size, p.hop_size)
        t3 = time.time()
        print("torch %s, %d thread(s), %.1f s of audio: features %.2f s, network %.2f s, synthesis %.2f s, "
              "total %.2f s" % (torch.__version__, a.threads, a.seconds, t1 - t0, t2 - t1, t3 - t2, t3 - t0))


if __name__ == "__main__":
    main()
