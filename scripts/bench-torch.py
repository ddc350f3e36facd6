#!/usr/bin/env python3
"""bench-torch.py - the PyTorch reference side of the benchmarks.

  bench-torch.py mix OUT.wav SECONDS         write the deterministic test mixture
  bench-torch.py time MODEL.th MIX.wav THREADS [--device cpu|cuda|mps] [--e2e OUTDIR]
                                             [--fp32 default|strict] [--warm 0|1]
                                             [--libs 0|1]
                                             time the demucs CLI computation
                                             (normalise, apply_model split=True
                                             overlap=0.25 shifts=0, de-normalise)
                                             and print one JSON line

Needs torch and the demucs source (.ref/demucs, .ref/stubs; see ../shared/README.md).
The model is loaded before the timed region.  Without --e2e the audio is decoded
outside it and nothing is written (the model computation alone); with --e2e the
timed region is file in -> stems on disk like the demucs CLI: decode the WAV,
separate, rescale each stem as demucs's save_audio does (clip="rescale"), write
16-bit WAVs into OUTDIR (numpy + the wave module: torchaudio.save needs
torchcodec, which the GPU machine lacks).  --fp32 strict turns off TF32 for
cuDNN convolutions and cuBLAS matmuls (PyTorch's own default runs its CUDA
convolutions in TF32); the JSON line says which settings were in force.
--warm 1 first separates 10 s of noise with the same settings, outside the
timed region, so that the timed run finds kernels loaded, cuDNN/cuBLAS
initialised and the caching allocator's pools made: the steady state of a
process that separates many files (stemsplit's counterpart: the second file's
time in its per-file report).
--libs 1 (cuda) starts the GPU libraries after the model load, outside the
timed region, with a few small operations of generic shapes (a matrix product
for cuBLAS, two convolutions for cuDNN, an STFT for cuFFT): the counterpart of
stemsplit's CUDA warm-up thread, which starts cuBLAS beside its model load.
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
    opts = dict(zip(sys.argv[5::2], sys.argv[6::2]))
    device = opts.get("--device", "cpu")
    e2e = opts.get("--e2e")
    fp32 = opts.get("--fp32", "default")
    warm = opts.get("--warm", "0") == "1"
    libs = opts.get("--libs", "0") == "1" and device == "cuda"
    if fp32 not in ("default", "strict"):
        sys.exit("bench-torch.py: --fp32 takes default or strict, not %r" % fp32)
    if fp32 == "strict":
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    if threads > 0:                      # 0: leave torch its default
        torch.set_num_threads(threads)
    import numpy as np, wave

    def decode():
        ch, a = read_wav(mix_path)
        return torch.from_numpy(np.frombuffer(a, dtype=np.float32).reshape(-1, ch).T.copy())

    def write_stems(out, names):
        os.makedirs(e2e, exist_ok=True)
        for stem, name in zip(out, names):
            stem = stem / max(1.01 * stem.abs().max().item(), 1)           # demucs prevent_clip rescale
            pcm = (stem.numpy().T * 32767.0).round().clip(-32768, 32767).astype("<i2")
            with wave.open(os.path.join(e2e, name + ".wav"), "wb") as w:
                w.setnchannels(pcm.shape[1]); w.setsampwidth(2); w.setframerate(mr.SR)
                w.writeframes(pcm.tobytes())

    wav = None if e2e else decode()
    model, _ = mr.load_model(model_path)
    model.to(device)
    from demucs.apply import apply_model
    if warm:
        noise = torch.randn(1, 2, 10 * mr.SR, generator=torch.Generator().manual_seed(7)).to(device)
        with torch.no_grad():
            apply_model(model, noise, shifts=0, split=True, overlap=0.25, device=device)
    if libs:
        with torch.no_grad():
            a = torch.randn(256, 256, device=device)
            (a @ a).sum().item()
            torch.nn.functional.conv2d(torch.randn(1, 4, 32, 32, device=device), torch.randn(8, 4, 3, 3, device=device))
            torch.nn.functional.conv1d(torch.randn(1, 4, 256, device=device), torch.randn(8, 4, 8, device=device),
                                       stride=4)
            torch.stft(torch.randn(4 * 4096, device=device), 4096, hop_length=1024,
                       window=torch.hann_window(4096, device=device), return_complex=True)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    if e2e:
        wav = decode()
    x = wav.to(device)
    ref = x.mean(0)
    mean, std = ref.mean(), ref.std()
    with torch.no_grad():
        out = apply_model(model, ((x - mean) / std)[None], shifts=0, split=True, overlap=0.25,
                          device=device)[0]
    out = (out * std + mean).cpu()
    if e2e:
        write_stems(out, model.sources)
    wall = time.perf_counter() - t0
    seconds = wav.shape[-1] / mr.SR
    res = {"impl": "pytorch" + (" e2e" if e2e else ""), "device": device, "threads": threads, "warm": warm, "libs": libs,
           "audio_seconds": seconds,
           "wall_seconds": wall, "rtf": seconds / wall, "torch": torch.__version__, "fp32": fp32,
           "cudnn_tf32": torch.backends.cudnn.allow_tf32, "matmul_tf32": torch.backends.cuda.matmul.allow_tf32}
    if device == "cuda":
        res["peak_gpu_bytes"] = torch.cuda.max_memory_allocated()
    print(json.dumps(res))


if __name__ == "__main__":
    main()
