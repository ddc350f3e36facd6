#!/usr/bin/env python3
"""bench-torch.py - the PyTorch reference side of the benchmarks.

  bench-torch.py mix OUT.wav SECONDS         write the deterministic test mixture
  bench-torch.py time MODEL.th MIX.wav THREADS [--device cpu|cuda|mps]
                                             time the demucs CLI computation
                                             (normalise, apply_model split=True
                                             overlap=0.25 shifts=0, de-normalise)
                                             and print one JSON line

Needs torch and the demucs source (.ref/demucs, .ref/stubs; see ../shared/README.md).
The audio is decoded outside the timed region; the model is loaded before it.
"""
import importlib.util, json, os, struct, sys, time, array

here = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("make_reference", os.path.join(here, "make-reference.py"))
mr = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mr)


def read_wav(path):
    with open(path, "rb") as f:
        data = f.read()
    pos, ch, payload = 12, None, None
    while pos + 8 <= len(data):
        cid, size = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
        if cid == b"fmt ":
            ch = struct.unpack("<H", data[pos + 10:pos + 12])[0]
        elif cid == b"data":
            payload = data[pos + 8:pos + 8 + size]
        pos += 8 + size + (size & 1)
    a = array.array("f")
    a.frombytes(payload)
    return ch, a


def main():
    mr.setup_imports(os.environ.get("DEMUCS_SRC", ".ref"), os.environ.get("DEMUCS_STUBS", ".ref/stubs"))
    import torch
    if sys.argv[1] == "mix":
        mix = mr.make_mix(int(float(sys.argv[3]) * mr.SR), 2, 4245)
        mr.write_wav_f32(sys.argv[2], mix.numpy())
        return
    model_path, mix_path, threads = sys.argv[2], sys.argv[3], int(sys.argv[4])
    device = sys.argv[6] if len(sys.argv) > 6 and sys.argv[5] == "--device" else "cpu"
    if threads > 0:                      # 0: leave torch its default
        torch.set_num_threads(threads)
    ch, a = read_wav(mix_path)
    wav = torch.frombuffer(bytearray(a.tobytes()), dtype=torch.float32).view(-1, ch).t().contiguous()
    model, _ = mr.load_model(model_path)
    model.to(device)
    from demucs.apply import apply_model
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    x = wav.to(device)
    ref = x.mean(0)
    mean, std = ref.mean(), ref.std()
    with torch.no_grad():
        out = apply_model(model, ((x - mean) / std)[None], shifts=0, split=True, overlap=0.25,
                          device=device)[0]
    out = (out * std + mean).cpu()
    wall = time.perf_counter() - t0
    seconds = wav.shape[-1] / mr.SR
    res = {"impl": "pytorch", "device": device, "threads": threads, "audio_seconds": seconds,
           "wall_seconds": wall, "rtf": seconds / wall, "torch": torch.__version__}
    if device == "cuda":
        res["peak_gpu_bytes"] = torch.cuda.max_memory_allocated()
    print(json.dumps(res))


if __name__ == "__main__":
    main()
