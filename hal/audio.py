"""Voice prompts: text spoken by espeak-ng or WAV files (one, or clips joined into one), played with aplay.

``say()`` only queues: a worker thread plays, so a lift or a kiosk never waits on audio and never crashes on
it. A missing player or sound card is logged once as a warning; prompts are then dropped (and counted) until
a retry 30 s later finds audio working again (a USB sound card replugged, a busy device freed). The volume is
asked for before each prompt, so a day/night schedule applies to the next prompt said.

``backend = "wav"`` plays recordings; a prompt without a playable recording is still spoken by espeak-ng when it
is installed (a warning once per text), and when it is not, the prompt is counted ``unsaid`` and its reason is the
speaker's ``last_error`` (the self-test fails on it): a trapped passenger never gets silence without a trace.

Takes its own ``AudioSpec`` (plain values) and imports nothing from the rest of the project.
"""

from __future__ import annotations

import logging
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
import wave
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from hal.espeak import (
    DEFAULT_VOICE,
    ESPEAK,
    MANDARIN_VOICE,
    AudioError,
    render_to_wav,
    resolve_voice,
)
from hal.wavfile import SAMPLE_WIDTH, WavError, fit, join_and_scale, read_info

__all__ = [
    "DEFAULT_VOICE",
    "MANDARIN_VOICE",
    "AudioError",
    "AudioSpec",
    "EspeakSpeaker",
    "NullSpeaker",
    "Speaker",
    "Unsaid",
    "Wav",
    "make_speaker",
    "probe_audio",
]

log = logging.getLogger(__name__)

APLAY = "aplay"
QUEUE_MAX = 16  # prompts waiting; beyond this new prompts are dropped (a stuck player must not eat memory)
PLAY_TIMEOUT_S = 120.0  # longest prompt we would ever play
PROBE_RATE = 22050  # Hz of the probe's silence (espeak-ng's rate)
RETRY_AFTER_FAILURE_S = 30.0  # after audio failed, try again this much later: cheap, and a prompt may matter
_PACKAGES = {ESPEAK: "espeak-ng", APLAY: "alsa-utils"}

# one recording, or clips played one after the other as one prompt; a str among the clips is a part no recording
# says (a car model heard for the first time): espeak-ng says it, at the clips' rate and loudness
Wav = Path | Sequence[Path | str]
Backend = Literal["auto", "espeak", "wav", "none"]


@dataclass(frozen=True)
class AudioSpec:
    """How a node speaks: backend, espeak-ng voice, ALSA device, and the volume of a prompt said without one."""

    backend: Backend = "auto"
    voice: str = DEFAULT_VOICE
    device: str = ""
    volume: int = 80  # percent


class Speaker(Protocol):
    """Says prompts without blocking the caller and without raising; the one speaker interface of every node."""

    def say(self, text: str | None = None, wav: Wav | None = None, volume: int | None = None) -> None:
        """Queue a prompt: the WAV (or clips, joined) when given and playable, else the text; ``volume`` in
        percent (None: the speaker's own)."""
        ...

    def health(self) -> dict[str, Any]:
        """Counts and the last error (None when fine), for the heartbeat and the self-test."""
        ...

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until every queued prompt was played or dropped; False on timeout."""
        ...

    def close(self) -> None:
        """Stop the worker; prompts still queued are dropped."""
        ...


def _wav_paths(wav: Wav) -> list[Path | str]:
    return [wav] if isinstance(wav, Path) else list(wav)


def _run(
    command: list[str], timeout_s: float, track: Callable[[subprocess.Popen[bytes] | None], None] | None = None
) -> None:
    """Run a player; every failure becomes AudioError with a message a technician can act on.

    ``track`` is told the running process (and None when it ended), so a closing speaker can stop it.
    """
    try:
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    except FileNotFoundError:
        raise AudioError(f"{command[0]} not found (apt-get install {_PACKAGES.get(command[0], command[0])})") from None
    except OSError as exc:
        raise AudioError(f"{command[0]} cannot run: {exc}") from None
    if track:
        track(proc)
    try:
        _, stderr = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise AudioError(f"{command[0]} did not finish within {timeout_s:g} s") from None
    finally:
        if track:
            track(None)
    if proc.returncode != 0:
        lines = stderr.decode(errors="replace").strip().splitlines()
        why = lines[-1] if lines else f"exit code {proc.returncode}"
        hint = " (no sound card? check audio.device and aplay -l)" if command[0] == APLAY else ""
        raise AudioError(f"{command[0]} failed: {why}{hint}")


def scratch_dir() -> str | None:
    """Where a prompt's short-lived WAV is made: /dev/shm (memory) when it is there, so the voice in a stuck
    lift still speaks when the card is full or read-only (and a prompt does not wear the card); else the
    default temporary folder."""
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK) else None


class Unsaid(AudioError):
    """A prompt nothing could say (backend wav, no recording, no espeak-ng): counted, reported, audio not muted."""


@dataclass
class _Probe:
    """A probe of the audio path in the queue: a short silence played through the player and device."""

    path: Path
    done: threading.Event
    error: str | None = None


PROBE_SILENCE_S = 0.2


class _QueuedSpeaker:
    """The worker thread and the failure bookkeeping shared by the real speakers."""

    backend = "queued"

    def __init__(self, retry_after_s: float = RETRY_AFTER_FAILURE_S, warned: bool = False) -> None:
        self._queue: queue.Queue[tuple[str | None, Wav | _Probe | None, int | None] | None] = queue.Queue(
            maxsize=QUEUE_MAX
        )
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._busy = False
        self._retry_after_s = retry_after_s
        self._failed_until: float | None = None  # monotonic time before which prompts are dropped
        self._warned = warned  # True when the caller already warned (a player known missing at start)
        self._full_warned = False
        self._counts = {"played": 0, "skipped": 0, "dropped": 0, "failed": 0, "unsaid": 0, "probes": 0}
        self._last_error: str | None = None
        self._closed = False
        self._player: subprocess.Popen[bytes] | None = None  # the espeak-ng or aplay running now
        self._thread = threading.Thread(target=self._work, name=f"speaker-{self.backend}", daemon=True)
        self._thread.start()

    def say(self, text: str | None = None, wav: Wav | None = None, volume: int | None = None) -> None:
        if text is None and wav is None:
            log.debug("say() with neither text nor wav: nothing to say")
            return
        with self._lock:
            if self._closed:
                return
            try:
                self._queue.put_nowait((text, wav, volume))  # under the lock, so wait_idle never misses a prompt
            except queue.Full:
                self._counts["dropped"] += 1
                first = not self._full_warned
                self._full_warned = True
            else:
                self._busy = True
                return
        if first:
            log.warning("voice prompts dropped: %d prompts already waiting (audio stuck?)", QUEUE_MAX)

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                break
            self._play_one(*item)
            with self._lock:
                if self._queue.empty():
                    self._busy = False
                    self._full_warned = False
                    self._idle.notify_all()
        with self._lock:
            self._busy = False
            self._idle.notify_all()

    def probe(self, timeout: float = PLAY_TIMEOUT_S) -> str | None:
        """Play 0.2 s of silence through the player and the configured device, after whatever is queued: None
        when the audio path took it, else why not. Nothing is heard; counted as ``probes``."""
        with tempfile.TemporaryDirectory(prefix="changbai-probe-", dir=scratch_dir()) as tmp:
            path = Path(tmp) / "silence.wav"
            with wave.open(str(path), "wb") as w:
                w.setnchannels(1)
                w.setsampwidth(SAMPLE_WIDTH)
                w.setframerate(PROBE_RATE)
                w.writeframes(bytes(SAMPLE_WIDTH * int(PROBE_RATE * PROBE_SILENCE_S)))
            probe = _Probe(path, threading.Event())
            with self._lock:
                if self._closed:
                    return "the speaker is closed"
                try:
                    self._queue.put_nowait((None, probe, 100))
                except queue.Full:
                    return f"{QUEUE_MAX} prompts waiting: the audio is stuck"
                self._busy = True
            if not probe.done.wait(timeout):
                return f"the audio probe did not finish within {timeout:g} s"
            return probe.error

    def _play_probe(self, probe: _Probe) -> None:
        with self._lock:
            muted = self._failed_until is not None and time.monotonic() < self._failed_until
            error = self._last_error
        try:
            if muted:
                probe.error = f"audio muted after a failure: {error}"
                return
            try:
                self._aplay(probe.path)
            except AudioError as exc:
                probe.error = str(exc)
                with self._lock:
                    self._counts["failed"] += 1
                    self._last_error = str(exc)
                    self._failed_until = time.monotonic() + self._retry_after_s
                log.warning("audio probe failed: %s", exc)
                return
            with self._lock:
                self._counts["probes"] += 1
                self._failed_until = None
                self._last_error = None
        finally:
            probe.done.set()

    def _aplay(self, path: Path) -> None:
        raise NotImplementedError

    def _play_one(self, text: str | None, wav: Wav | _Probe | None, volume: int | None) -> None:
        if isinstance(wav, _Probe):
            self._play_probe(wav)
            return
        now = time.monotonic()
        with self._lock:
            if self._failed_until is not None and now < self._failed_until:
                self._counts["dropped"] += 1
                return
        try:
            played = self._play(text, wav, volume)
        except Unsaid as exc:  # nothing wrong with the audio path: later prompts must still play
            with self._lock:
                self._counts["unsaid"] += 1
                self._last_error = str(exc)
            log.error("voice prompt not said: %s", exc)
            return
        except AudioError as exc:
            with self._lock:
                if self._closed:
                    return  # stopped by close(), not an audio failure
                self._counts["failed"] += 1
                self._last_error = str(exc)
                self._failed_until = time.monotonic() + self._retry_after_s
                first = not self._warned
                self._warned = True
            if first:
                log.warning("audio unavailable, voice prompts muted (retry in %.0f s): %s", self._retry_after_s, exc)
            else:
                log.debug("audio still unavailable: %s", exc)
            return
        with self._lock:
            if not played:  # proves nothing about the audio path either way
                self._counts["skipped"] += 1
                return
            self._counts["played"] += 1
            recovered = self._failed_until is not None
            self._failed_until = None
            self._last_error = None
            self._warned = False
        if recovered:
            log.info("audio works again")

    def _play(self, text: str | None, wav: Wav | None, volume: int | None) -> bool:
        """Play one prompt; False when there was nothing this backend can play; AudioError on failure."""
        raise NotImplementedError

    def _track(self, proc: subprocess.Popen[bytes] | None) -> None:
        with self._lock:
            self._player = proc
            closing = self._closed
        if proc is not None and closing:
            proc.kill()

    def health(self) -> dict[str, Any]:
        """For the heartbeat and the self-test: counts, queue depth and the last error (None when fine)."""
        with self._lock:
            return {
                "backend": self.backend,
                **self._counts,
                "queued": self._queue.qsize(),
                "muted": self._failed_until is not None,
                "last_error": self._last_error,
            }

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until every queued prompt has been played (or dropped); False on timeout."""
        with self._lock:
            return self._idle.wait_for(lambda: not self._busy, timeout)

    def close(self, timeout: float = 5.0) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            player = self._player
        if player is not None and player.poll() is None:
            player.kill()  # a long prompt must not hold up a node's shutdown
        while True:  # drop what is waiting so the stop marker gets in at once
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None and isinstance(item[1], _Probe):
                item[1].error = "the speaker was closed"
                item[1].done.set()
        self._queue.put(None)
        self._thread.join(timeout)


class EspeakSpeaker(_QueuedSpeaker):
    """Text through espeak-ng into a temporary WAV, WAV files through aplay (``-D device`` when configured)."""

    def __init__(self, spec: AudioSpec, retry_after_s: float = RETRY_AFTER_FAILURE_S, warned: bool = False) -> None:
        self.spec = spec
        self.backend = spec.backend
        self._missing_wavs: set[Path] = set()
        self._last_volume: int | None = None  # of the last prompt played
        # a wrong voice still speaks (a Mandarin voice beats silence in a stuck lift) but is reported; espeak-ng
        # 1.51's "cmn" reads Chinese as English-spelled pinyin and is replaced by cmn-latn-pinyin, with a warning
        self.voice: str = spec.voice
        self.voice_error: str | None = None
        self._spoken_instead: set[str] = set()  # texts backend wav had espeak-ng say (warned once each)
        # backend wav without espeak-ng installed: nothing can say a prompt the recordings lack
        self.synthesis = spec.backend != "wav" or shutil.which(ESPEAK) is not None
        if self.synthesis:
            self.voice, self.voice_error = resolve_voice(spec.voice)
            if self.voice_error:
                log.warning("audio voice: %s", self.voice_error)
        super().__init__(retry_after_s, warned)

    def _play(self, text: str | None, wav: Wav | None, volume: int | None) -> bool:
        volume = max(0, min(100, self.spec.volume if volume is None else volume))
        self._last_volume = volume
        if wav is not None and self.backend != "espeak":
            paths = _wav_paths(wav)
            missing = [p for p in paths if isinstance(p, Path) and not p.is_file()]
            if not missing:
                try:
                    self._play_wavs(paths, volume)
                    return True
                except WavError as exc:  # a bad recording: say the text rather than nothing
                    missing = [exc.path or Path(str(paths[0]))]
                    log.warning("prompt WAV not playable: %s", exc)
            for path in missing:
                if path not in self._missing_wavs:  # once per file: a prompt may repeat every minute
                    self._missing_wavs.add(path)
                    log.warning("prompt WAV %s is missing; %s", path, "speaking the text" if text else "nothing to say")
        if text is None:
            log.debug("prompt has nothing backend %s can play: wav %s", self.backend, wav)
            return False
        if self.backend == "wav":
            if not self.synthesis:
                raise Unsaid(f"audio.backend = wav: no recording of {text[:40]!r} and {ESPEAK} is not installed to "
                             f"say it (record it in the prompt pack, or apt-get install {_PACKAGES[ESPEAK]})")  # fmt: skip
            if text not in self._spoken_instead:
                self._spoken_instead.add(text)
                log.warning("audio.backend = wav: no recording of %r; %s says it", text[:40], ESPEAK)
        with tempfile.TemporaryDirectory(prefix="changbai-say-", dir=scratch_dir()) as tmp:
            path = render_to_wav(text, Path(tmp) / "prompt.wav", self.voice, volume, check_voice=False)
            self._aplay(path)
        return True

    def _play_wavs(self, parts: list[Path | str], volume: int) -> None:
        """One file at full volume goes to aplay as it is; clips, or a lower volume, through one joined file;
        text among the clips is rendered by espeak-ng and fitted to the clips' rate and loudness."""
        one = parts[0] if len(parts) == 1 and isinstance(parts[0], Path) else None
        if one is not None and (volume == 100 or read_info(one, loudness=False).width != SAMPLE_WIDTH):
            self._aplay(one)  # as recorded (only 16-bit samples can be scaled)
            return
        with tempfile.TemporaryDirectory(prefix="changbai-say-", dir=scratch_dir()) as tmp:
            paths = self._synthesise_parts(parts, Path(tmp))
            self._aplay(join_and_scale(paths, Path(tmp) / "prompt.wav", volume / 100))

    def _synthesise_parts(self, parts: list[Path | str], folder: Path) -> list[Path]:
        """``parts`` as files: each text rendered by espeak-ng at the recorded clips' rate, channels and mean RMS."""
        texts = [part for part in parts if isinstance(part, str)]
        if not texts:
            return [part for part in parts if isinstance(part, Path)]
        if not self.synthesis:
            raise Unsaid(f"audio.backend = wav: no recording of {texts[0]!r} and {ESPEAK} is not installed to say it")
        infos = [read_info(part) for part in parts if isinstance(part, Path)]
        like = infos[0] if infos else None
        level = sum(i.rms for i in infos) / len(infos) if infos else 0.0
        paths = []
        for n, part in enumerate(parts):
            if isinstance(part, Path):
                paths.append(part)
                continue
            said = render_to_wav(part, folder / f"part{n}.raw.wav", self.voice, 100, check_voice=False)
            paths.append(fit(said, folder / f"part{n}.wav", like.rate, like.channels, level) if like else said)
        return paths

    def health(self) -> dict[str, Any]:
        return {
            **super().health(),
            "voice": self.voice,
            "volume": self._last_volume,
            "error": self.voice_error,
            "synthesis": self.synthesis,
        }

    def _aplay(self, path: Path) -> None:
        command = [APLAY, "-q"]
        if self.spec.device:
            command += ["-D", self.spec.device]
        _run([*command, str(path)], PLAY_TIMEOUT_S, self._track)


class NullSpeaker:
    """Says nothing (``backend = "none"``): a node without a speaker."""

    backend = "none"

    def say(self, text: str | None = None, wav: Wav | None = None, volume: int | None = None) -> None:
        log.debug("voice prompt not played (audio backend none): %r %s", text, wav or "")

    def health(self) -> dict[str, Any]:
        return {"backend": self.backend, "last_error": None}

    def wait_idle(self, timeout: float | None = None) -> bool:
        return True

    def close(self) -> None:
        pass


def probe_audio(speaker: Speaker, timeout: float = PLAY_TIMEOUT_S) -> tuple[bool, str | None]:
    """Whether ``speaker``'s audio path can be probed, and why it failed (None: the probe played). A speaker
    that plays nothing (backend none, a test's or the simulation's) cannot be probed: (False, None)."""
    if not isinstance(speaker, _QueuedSpeaker):
        return False, None
    return True, speaker.probe(timeout)


def make_speaker(spec: AudioSpec) -> Speaker:
    """The node's speaker: espeak-ng and aplay ("auto", "espeak"; "wav": recordings, espeak-ng for a prompt
    without one) or silence ("none")."""
    if spec.backend == "none":
        return NullSpeaker()
    missing = [p for p in ((APLAY,) if spec.backend == "wav" else (ESPEAK, APLAY)) if shutil.which(p) is None]
    if spec.backend == "wav" and shutil.which(ESPEAK) is None:
        log.warning("audio.backend = wav without %s: a prompt the recordings lack cannot be said", ESPEAK)
    if missing:
        # said once here; each prompt then fails quietly inside the worker until the retry finds them
        log.warning(
            "audio: %s not installed (apt-get install %s); voice prompts will be silent",
            " and ".join(missing),
            " ".join(_PACKAGES[p] for p in missing),
        )
    return EspeakSpeaker(spec, warned=bool(missing))
