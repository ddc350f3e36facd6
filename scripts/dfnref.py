"""dfnref.py - load DeepFilterNet's own Python package (Rikorose/DeepFilterNet,
DeepFilterNet/df) without its compiled extension, for make-dfn-fixtures.py and
bench-dfn.py.  Needs torch and numpy.

The package imports `libdf`, a Rust extension (pyDF/src/lib.rs over
libDF/src/lib.rs and transforms.rs) that is not available here: `LibDF` below
is a numpy port of the few functions enhance() uses, each naming the Rust
function it mirrors.  loguru and torchaudio, which df/*.py import but the
enhancement does not use, are replaced by inert stand-ins (icecream is already
optional in df/enhance.py).  The network (df/deepfilternet3.py, df/modules.py,
df/multiframe.py), config handling, checkpoint loading and enhance() are the
reference's own code.
"""
import math
import os
import sys
import types

import numpy as np

MEAN_NORM_INIT = (-60.0, -90.0)     # libDF/src/lib.rs MEAN_NORM_INIT
UNIT_NORM_INIT = (0.001, 0.0001)    # libDF/src/lib.rs UNIT_NORM_INIT


# ------------------------------------------------------------------ libdf port

def freq2erb(freq_hz):
    """lib.rs freq2erb (f32)."""
    return np.float32(9.265) * np.float32(math.log1p(np.float32(freq_hz) / np.float32(24.7 * 9.265)))


def erb2freq(n_erb):
    """lib.rs erb2freq (f32)."""
    return np.float32(24.7 * 9.265) * np.float32(math.exp(np.float32(n_erb) / np.float32(9.265)) - 1.0)


def erb_fb(sr, fft_size, nb_bands, min_nb_freqs):
    """lib.rs erb_fb: number of frequency bins in each ERB band (sums to fft_size/2+1)."""
    nyq = sr // 2
    freq_width = np.float32(sr) / np.float32(fft_size)
    erb_low = freq2erb(0.0)
    erb_high = freq2erb(float(nyq))
    erb = [0] * nb_bands
    step = (erb_high - erb_low) / np.float32(nb_bands)
    prev_freq = 0
    freq_over = 0
    for i in range(1, nb_bands + 1):
        f = erb2freq(erb_low + np.float32(i) * step)
        fb = int(round(float(f / freq_width)))   # f32::round: half away from zero (f > 0)
        if float(f / freq_width) % 1.0 == 0.5:
            fb = int(math.floor(float(f / freq_width))) + 1
        nb_freqs = fb - prev_freq - freq_over
        if nb_freqs < min_nb_freqs:
            freq_over = min_nb_freqs - nb_freqs
            nb_freqs = min_nb_freqs
        else:
            freq_over = 0
        erb[i - 1] = nb_freqs
        prev_freq = fb
    erb[nb_bands - 1] += 1
    too_large = sum(erb) - (fft_size // 2 + 1)
    if too_large > 0:
        erb[nb_bands - 1] -= too_large
    assert sum(erb) == fft_size // 2 + 1 and min(erb) > 0, erb
    return erb


def vorbis_window(fft_size):
    """DFState::new: w[i] = sin(pi/2 * sin^2(pi*(i+0.5)/N)), computed in f64, stored f32."""
    h = fft_size // 2
    i = np.arange(fft_size, dtype=np.float64)
    s = np.sin(0.5 * np.pi * (i + 0.5) / h)
    return np.sin(0.5 * np.pi * s * s).astype(np.float32)


class DF:
    """pyDF's DF class over lib.rs DFState: analysis/synthesis per channel from a
    zeroed state (pyDF resets before each channel), erb_widths, sizes."""

    def __init__(self, sr, fft_size, hop_size, nb_bands=32, min_nb_erb_freqs=1):
        assert hop_size * 2 <= fft_size
        self._sr, self._fft, self._hop = sr, fft_size, hop_size
        self.erb = erb_fb(sr, fft_size, nb_bands, min_nb_erb_freqs)
        self.window = vorbis_window(fft_size)
        # DFState::new: wnorm = 1 / (window_size^2 / (2 * frame_size)), applied in analysis only
        self.wnorm = np.float32(1.0) / (np.float32(fft_size ** 2) / np.float32(2 * hop_size))

    def erb_widths(self):
        return np.array(self.erb, dtype=np.uint64)

    def fft_window(self):
        return self.window.copy()

    def sr(self):
        return self._sr

    def fft_size(self):
        return self._fft

    def hop_size(self):
        return self._hop

    def nb_erb(self):
        return len(self.erb)

    def reset(self):
        pass

    def analysis(self, audio):
        """pyDF DF.analysis + lib.rs frame_analysis: [C, L] f32 -> [C, L // hop, F] c64.
        Frame t windows the samples [(t+1)*hop - fft, (t+1)*hop) with zeros before the
        start (no centring; analysis_mem starts zeroed), rfft, times wnorm."""
        x = np.asarray(audio, dtype=np.float32)
        C, L = x.shape
        n, hop = self._fft, self._hop
        T = L // hop
        xp = np.concatenate([np.zeros((C, n - hop), np.float32), x[:, :T * hop]], axis=1)
        idx = np.arange(T)[:, None] * hop + np.arange(n)[None, :]
        frames = xp[:, idx] * self.window                       # [C, T, n]
        spec = np.fft.rfft(frames.astype(np.float64), axis=-1).astype(np.complex64)
        return (spec * self.wnorm).astype(np.complex64)

    def synthesis(self, spec):
        """pyDF DF.synthesis + lib.rs frame_synthesis: [C, T, F] c64 -> [C, T * hop] f32.
        Unnormalised inverse real FFT (realfft; imaginary parts of DC and Nyquist ignored),
        times the window, overlap-add; output frame t is the first hop samples of frame t
        plus the memory of the previous frames (zeroed at the start)."""
        X = np.asarray(spec, dtype=np.complex64)
        C, T, F = X.shape
        n, hop = self._fft, self._hop
        frames = (np.fft.irfft(X.astype(np.complex128), n=n, axis=-1) * n).astype(np.float32)
        frames = frames * self.window
        out = np.zeros((C, T * hop + n), np.float32)
        for t in range(T):
            out[:, t * hop:t * hop + n] += frames[:, t]
        return out[:, :T * hop]


def erb(spec, widths, db=True):
    """pyDF erb -> transforms.rs erb_with_output -> lib.rs compute_band_corr: mean power
    |X|^2 over each band's bins (times 1/band_size per term), then 10*log10(x + 1e-10)."""
    X = np.asarray(spec, dtype=np.complex64)
    p = (X.real.astype(np.float32) ** 2 + X.imag.astype(np.float32) ** 2)
    out = []
    b = 0
    for w in [int(v) for v in widths]:
        k = np.float32(1.0 / w)
        out.append((p[..., b:b + w] * k).sum(axis=-1, dtype=np.float32))
        b += w
    e = np.stack(out, axis=-1).astype(np.float32)
    if db:
        e = (np.log10(e + np.float32(1e-10)) * np.float32(10.0)).astype(np.float32)
    return e


def erb_norm(x, alpha, state=None):
    """pyDF erb_norm -> transforms.rs erb_norm -> lib.rs band_mean_norm_erb, per channel
    over time: s = x*(1-a) + s*a; x = (x - s) / 40.  Initial state: linspace(-60, -90, E)."""
    x = np.array(x, dtype=np.float32)
    C, T, E = x.shape
    a = np.float32(alpha)
    s = np.tile(np.linspace(MEAN_NORM_INIT[0], MEAN_NORM_INIT[1], E, dtype=np.float32), (C, 1)) \
        if state is None else np.array(state, np.float32)
    for t in range(T):
        s = x[:, t] * (np.float32(1) - a) + s * a
        x[:, t] = (x[:, t] - s) / np.float32(40.0)
    return x


def unit_norm_init(num_freq_bins):
    """pyDF unit_norm_init: linspace(0.001, 0.0001, F) as [1, F]."""
    return np.linspace(UNIT_NORM_INIT[0], UNIT_NORM_INIT[1], num_freq_bins,
                       dtype=np.float32).reshape(1, num_freq_bins)


def unit_norm(spec, alpha, state=None):
    """pyDF unit_norm -> transforms.rs unit_norm -> lib.rs band_unit_norm, per channel
    over time: s = |x|*(1-a) + s*a; x /= sqrt(s).  Initial state: linspace(0.001, 0.0001, F)."""
    X = np.array(spec, dtype=np.complex64)
    C, T, F = X.shape
    a = np.float32(alpha)
    s = np.tile(unit_norm_init(F)[0], (C, 1)) if state is None else np.array(state, np.float32)
    for t in range(T):
        mag = np.abs(X[:, t]).astype(np.float32)
        s = mag * (np.float32(1) - a) + s * a
        X[:, t] = X[:, t] / np.sqrt(s)
    return X


# ------------------------------------------------------------------ stand-ins

class _Level:
    no = 0


class _Logger:
    """loguru's stand-in: records warnings and errors, prints nothing."""

    def __init__(self):
        self.warnings = []

    def warning(self, msg, *a, **k):
        self.warnings.append(str(msg))

    error = warning

    def level(self, *a, **k):
        return _Level()

    def __getattr__(self, name):
        return lambda *a, **k: None


LOGGER = _Logger()


def load(ref):
    """Import the reference package from REF (the DeepFilterNet folder holding df/)."""
    if not os.path.isfile(os.path.join(ref, "df", "deepfilternet3.py")):
        sys.exit("%s: df/deepfilternet3.py not found (copy DeepFilterNet's python package there)"
                 % ref)
    lib = types.ModuleType("libdf")
    for name in ("DF", "erb", "erb_norm", "unit_norm", "unit_norm_init"):
        setattr(lib, name, globals()[name])
    sys.modules["libdf"] = lib
    lg = types.ModuleType("loguru")
    lg.logger = LOGGER
    sys.modules["loguru"] = lg
    try:
        import torchaudio  # noqa: F401
    except ImportError:
        ta = types.ModuleType("torchaudio")
        ta.AudioMetaData = object
        ta.__path__ = []
        comp = types.ModuleType("torchaudio.compliance")
        comp.__path__ = []
        kaldi = types.ModuleType("torchaudio.compliance.kaldi")
        kaldi.resample_waveform = None
        ta.compliance, comp.kaldi = comp, kaldi
        sys.modules.update({"torchaudio": ta, "torchaudio.compliance": comp,
                            "torchaudio.compliance.kaldi": kaldi})
    sys.path.insert(0, ref)
    import df.enhance
    return sys.modules["df.enhance"], sys.modules["df.config"].config
