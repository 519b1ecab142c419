"""WAV files for voice prompts: what a file holds (format, length, loudness), and clips joined and scaled into one
file for aplay (a prompt pack's pieces played as one prompt, at the volume of the hour).

Only uncompressed PCM WAV (Python's ``wave``); scaling and loudness need 16-bit samples, the format every
recorder and ``sox`` can write.
"""

from __future__ import annotations

import array
import math
import sys
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

SAMPLE_WIDTH = 2  # bytes: 16-bit PCM


class WavError(ValueError):
    """A file that is not a WAV this module can use; ``path`` is the file, the message says what is wrong."""

    def __init__(self, path: Path | None, problem: str) -> None:
        super().__init__(f"{path}: {problem}" if path else problem)
        self.path = path


@dataclass(frozen=True)
class WavInfo:
    """The format and content of one WAV file."""

    path: Path
    rate: int
    channels: int
    width: int  # bytes per sample
    frames: int
    rms: float  # 0..1 of full scale; NaN when the samples are not 16-bit

    @property
    def duration_s(self) -> float:
        return self.frames / self.rate if self.rate else 0.0

    @property
    def format(self) -> tuple[int, int, int]:
        """(rate, channels, width): clips joined into one prompt must share it."""
        return self.rate, self.channels, self.width

    def describe(self) -> str:
        return f"{self.duration_s:.1f} s, {self.rate} Hz, {self.channels} ch, {8 * self.width}-bit"


def _samples(data: bytes) -> array.array:
    samples = array.array("h")
    samples.frombytes(data)
    if sys.byteorder == "big":
        samples.byteswap()  # WAV is little-endian
    return samples


def _to_bytes(samples: array.array) -> bytes:
    if sys.byteorder == "big":
        samples = array.array("h", samples)
        samples.byteswap()
    return samples.tobytes()


def _read(path: Path, samples: bool = True) -> tuple[tuple[int, int, int], int, bytes]:
    """((rate, channels, width), frames, the sample bytes unless not ``samples``); WavError naming the file."""
    try:
        with wave.open(str(path), "rb") as w:
            frames = w.getnframes()
            return (
                (w.getframerate(), w.getnchannels(), w.getsampwidth()),
                frames,
                w.readframes(frames) if samples else b"",
            )
    except FileNotFoundError:
        raise WavError(path, "no such file") from None
    except (wave.Error, EOFError) as exc:
        raise WavError(path, f"not a PCM WAV file ({exc})") from None
    except OSError as exc:
        raise WavError(path, f"cannot be read ({exc.strerror})") from None


def read_info(path: Path, loudness: bool = True) -> WavInfo:
    """Format, length and (with ``loudness``) RMS level of ``path``; raises WavError unless a readable PCM WAV."""
    (rate, channels, width), frames, data = _read(path, loudness)
    rms = math.nan
    if width == SAMPLE_WIDTH and data:
        samples = _samples(data[: len(data) - len(data) % 2])
        rms = math.sqrt(sum(s * s for s in samples) / len(samples)) / 32768.0
    return WavInfo(path, rate, channels, width, frames, rms)


def join_and_scale(paths: Sequence[Path], out: Path, gain: float = 1.0) -> Path:
    """Write ``paths`` one after the other into ``out``, samples multiplied by ``gain`` 0..1 (16-bit only).

    Raises WavError when a file cannot be read, the files differ in format, or a gain is asked of samples
    that are not 16-bit.
    """
    if not paths:
        raise WavError(None, "no WAV files to join")
    if not 0.0 <= gain <= 1.0:
        raise ValueError(f"gain {gain} outside 0..1: a volume can only lower a recording")
    chunks: list[bytes] = []
    params = None
    for path in paths:
        these, _, chunk = _read(path)
        if params is not None and these != params:
            raise WavError(path, f"{these[0]} Hz {these[1]} ch {8 * these[2]}-bit differs from {paths[0]}")
        params = these
        chunks.append(chunk)
    assert params is not None
    data = b"".join(chunks)
    if gain != 1.0:
        if params[2] != SAMPLE_WIDTH:
            raise WavError(paths[0], f"volume can only be set on 16-bit samples, not {8 * params[2]}-bit")
        # gain <= 1 cannot overflow 16 bits, so no clamp per sample: about 3x faster (changbai-bench --only speech)
        data = _to_bytes(array.array("h", [int(s * gain) for s in _samples(data)]))
    with wave.open(str(out), "wb") as w:
        w.setframerate(params[0])
        w.setnchannels(params[1])
        w.setsampwidth(params[2])
        w.writeframes(data)
    return out


def fit(path: Path, out: Path, rate: int, channels: int, rms: float) -> Path:
    """Write ``path`` (16-bit, mono or stereo) into ``out`` at ``rate`` and ``channels`` (linear interpolation)
    and at the RMS level ``rms`` (0..1; peaks clamped): a synthesised word joined between recorded clips
    sounds at their rate and loudness."""
    (rate_in, channels_in, width), frames, data = _read(path)
    if width != SAMPLE_WIDTH or channels_in not in (1, 2) or channels not in (1, 2):
        raise WavError(path, f"cannot fit {8 * width}-bit {channels_in} ch audio to {channels} ch")
    samples = _samples(data[: len(data) - len(data) % 2])
    mono = samples if channels_in == 1 else array.array("h", samples[0::2])  # a recorder's stereo: left
    n = int(len(mono) * rate / rate_in) if rate != rate_in else len(mono)
    step = rate_in / rate
    values = []
    for i in range(n):
        x = i * step
        j = int(x)
        a = mono[j] if j < len(mono) else 0
        b = mono[j + 1] if j + 1 < len(mono) else a
        values.append(a + (b - a) * (x - j))
    level = math.sqrt(sum(v * v for v in values) / len(values)) / 32768.0 if values else 0.0
    gain = rms / level if level > 0 else 1.0
    fitted = array.array("h", (max(-32768, min(32767, int(v * gain))) for v in values))
    if channels == 2:
        both = array.array("h", bytes(4 * len(fitted)))
        both[0::2] = fitted
        both[1::2] = fitted
        fitted = both
    with wave.open(str(out), "wb") as w:
        w.setframerate(rate)
        w.setnchannels(channels)
        w.setsampwidth(SAMPLE_WIDTH)
        w.writeframes(_to_bytes(fitted))
    return out
