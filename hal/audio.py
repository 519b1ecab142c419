"""Voice prompts: text spoken by espeak-ng (Mandarin or English) or a WAV file, played with aplay.

``say()`` only queues: a worker thread plays, so a lift or a kiosk never waits on audio and never crashes on
it. A missing player or sound card is logged once as a warning; prompts are then dropped (and counted) until
a retry 30 s later finds audio working again (a USB sound card replugged, a busy device freed).
"""

from __future__ import annotations

import functools
import logging
import queue
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from common.config import AudioSection

log = logging.getLogger(__name__)

ESPEAK = "espeak-ng"
APLAY = "aplay"
DEFAULT_VOICE = "cmn"  # Mandarin: the language of the residents
RATE_WPM = 150  # espeak-ng's default is 175 words/min; slower is clearer for elderly listeners
QUEUE_MAX = 16  # prompts waiting; beyond this new prompts are dropped (a stuck player must not eat memory)
PLAY_TIMEOUT_S = 120.0  # longest prompt we would ever play
RETRY_AFTER_FAILURE_S = 30.0  # after audio failed, try again this much later: cheap, and a prompt may matter
_PACKAGES = {ESPEAK: "espeak-ng", APLAY: "alsa-utils"}


class AudioError(RuntimeError):
    """A prompt could not be rendered or played; ``render_to_wav`` raises it, ``Speaker.say`` never does."""


class Speaker(Protocol):
    """Says prompts without blocking the caller and without raising."""

    def say(self, text: str | None = None, wav: Path | None = None) -> None:
        """Queue a prompt: the WAV when given and playable, else the text."""
        ...

    def close(self) -> None:
        """Stop the worker; prompts still queued are dropped."""
        ...


def espeak_amplitude(volume_percent: int) -> int:
    """Config volume 0..100 % onto espeak-ng's amplitude 0..200 (its default 100 is 50 %)."""
    return max(0, min(200, round(volume_percent * 2)))


@functools.lru_cache(maxsize=1)
def espeak_voices() -> frozenset[str]:
    """Voice and language names espeak-ng knows (``espeak-ng --voices``); empty when it cannot be asked."""
    try:
        done = subprocess.run([ESPEAK, "--voices"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return frozenset()
    names: set[str] = set()
    for line in done.stdout.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 5:
            language, name, file = fields[1], fields[3], fields[4]
            names.update({language, name, file, file.rsplit("/", 1)[-1]})
            names.update(re.findall(r"\(([^\s()]+) \d+\)", line))  # other languages: "(zh-cmn 5)(zh 5)"
    return frozenset(n.lower() for n in names)


def unknown_voice(voice: str) -> str | None:
    """A problem line when espeak-ng would not know ``voice`` (it silently falls back to English), else None."""
    known = espeak_voices()
    base = voice.split("+", 1)[0].lower()  # "en+f3": voice plus variant
    if not known or base in known:
        return None
    return f"audio.voice {voice!r} is not an espeak-ng voice (e.g. cmn for Mandarin, en for English)"


def render_to_wav(
    text: str,
    path: Path,
    voice: str | None = DEFAULT_VOICE,
    volume: int = 80,
    timeout_s: float = 30.0,
    check_voice: bool = True,
) -> Path:
    """Speak ``text`` into a WAV file with ``espeak-ng -w`` (no sound card needed); raises AudioError.

    An unknown voice is an error here: espeak-ng itself would quietly speak Mandarin text in English.
    """
    if check_voice and voice is not None and (problem := unknown_voice(voice)):
        raise AudioError(problem)
    chosen = ["-v", voice] if voice is not None else []  # None: espeak-ng's own default voice
    # "--": a prompt such as "-5 度" must never be read as an option
    command = [ESPEAK, *chosen, "-a", str(espeak_amplitude(volume)), "-s", str(RATE_WPM), "-w", str(path), "--", text]
    _run(command, timeout_s)
    if not path.exists() or path.stat().st_size <= 44:  # 44 bytes: a WAV header without samples
        raise AudioError(f"{ESPEAK} wrote no audio to {path} (voice {voice!r})")
    return path


def _run(
    command: list[str], timeout_s: float, track: Callable[[subprocess.Popen[bytes] | None], None] | None = None
) -> None:
    """Run a player or renderer; every failure becomes AudioError with a message a technician can act on.

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


class _QueuedSpeaker:
    """The worker thread and the failure bookkeeping shared by the real speakers."""

    backend = "queued"

    def __init__(self, retry_after_s: float = RETRY_AFTER_FAILURE_S, warned: bool = False) -> None:
        self._queue: queue.Queue[tuple[str | None, Path | None] | None] = queue.Queue(maxsize=QUEUE_MAX)
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._busy = False
        self._retry_after_s = retry_after_s
        self._failed_until: float | None = None  # monotonic time before which prompts are dropped
        self._warned = warned  # True when the caller already warned (a player known missing at start)
        self._full_warned = False
        self._counts = {"played": 0, "skipped": 0, "dropped": 0, "failed": 0}
        self._last_error: str | None = None
        self._closed = False
        self._player: subprocess.Popen[bytes] | None = None  # the espeak-ng or aplay running now
        self._thread = threading.Thread(target=self._work, name=f"speaker-{self.backend}", daemon=True)
        self._thread.start()

    def say(self, text: str | None = None, wav: Path | None = None) -> None:
        if text is None and wav is None:
            log.debug("say() with neither text nor wav: nothing to say")
            return
        with self._lock:
            if self._closed:
                return
            try:
                self._queue.put_nowait((text, wav))  # under the lock, so wait_idle never misses a prompt
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

    def _play_one(self, text: str | None, wav: Path | None) -> None:
        now = time.monotonic()
        with self._lock:
            if self._failed_until is not None and now < self._failed_until:
                self._counts["dropped"] += 1
                return
        try:
            played = self._play(text, wav)
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

    def _play(self, text: str | None, wav: Path | None) -> bool:
        """Play one prompt; False when there was nothing this backend can play; AudioError on failure."""
        raise NotImplementedError

    def _track(self, proc: subprocess.Popen[bytes] | None) -> None:
        with self._lock:
            self._player = proc
            closing = self._closed
        if proc is not None and closing:
            proc.kill()

    def health(self) -> dict[str, object]:
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
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._queue.put(None)
        self._thread.join(timeout)


class EspeakSpeaker(_QueuedSpeaker):
    """Text through espeak-ng into a temporary WAV, WAV files through aplay (``-D device`` when configured)."""

    def __init__(
        self, section: AudioSection, retry_after_s: float = RETRY_AFTER_FAILURE_S, warned: bool = False
    ) -> None:
        self.section = section
        self.backend = section.backend
        self._missing_wavs: set[Path] = set()
        # a wrong voice still speaks (espeak-ng's default voice beats silence in a stuck lift) but is reported
        self.voice_error = unknown_voice(section.voice) if section.backend != "wav" else None
        self.voice: str | None = section.voice
        if self.voice_error:
            self.voice = DEFAULT_VOICE if unknown_voice(DEFAULT_VOICE) is None else None
            log.warning("%s; speaking with voice %s instead", self.voice_error, self.voice or "espeak-ng's default")
        super().__init__(retry_after_s, warned)

    def _play(self, text: str | None, wav: Path | None) -> bool:
        if wav is not None and self.backend != "espeak":
            if wav.is_file():
                self._aplay(wav)
                return True
            if wav not in self._missing_wavs:  # once per file: a prompt may repeat every minute
                self._missing_wavs.add(wav)
                log.warning("prompt WAV %s is missing; %s", wav, "speaking the text" if text else "nothing to say")
        if text is None or self.backend == "wav":
            log.debug("prompt has nothing backend %s can play: text %r, wav %s", self.backend, text, wav)
            return False
        with tempfile.TemporaryDirectory(prefix="changbai-say-") as tmp:
            path = render_to_wav(text, Path(tmp) / "prompt.wav", self.voice, self.section.volume, check_voice=False)
            self._aplay(path)
        return True

    def health(self) -> dict[str, object]:
        return {**super().health(), "error": self.voice_error}

    def _aplay(self, path: Path) -> None:
        command = [APLAY, "-q"]
        if self.section.device:
            command += ["-D", self.section.device]
        _run([*command, str(path)], PLAY_TIMEOUT_S, self._track)


class NullSpeaker:
    """Says nothing (``audio.backend = "none"``): a node without a speaker."""

    backend = "none"

    def say(self, text: str | None = None, wav: Path | None = None) -> None:
        log.debug("voice prompt not played (audio.backend = none): %r %s", text, wav or "")

    def health(self) -> dict[str, object]:
        return {"backend": self.backend, "last_error": None}

    def wait_idle(self, timeout: float | None = None) -> bool:
        return True

    def close(self) -> None:
        pass


class RecordingSpeaker:
    """For tests: remembers every prompt in ``.said`` as (text, wav); ``wait_for(n)`` blocks until n were said."""

    backend = "recording"

    def __init__(self) -> None:
        self.said: list[tuple[str | None, Path | None]] = []
        self._cond = threading.Condition()

    def say(self, text: str | None = None, wav: Path | None = None) -> None:
        with self._cond:
            self.said.append((text, wav))
            self._cond.notify_all()

    @property
    def texts(self) -> list[str | None]:
        with self._cond:
            return [text for text, _ in self.said]

    def wait_for(self, n: int, timeout: float = 5.0) -> bool:
        """True once at least ``n`` prompts were said; False after ``timeout`` real seconds."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self.said) >= n, timeout)

    def health(self) -> dict[str, object]:
        return {"backend": self.backend, "played": len(self.said), "last_error": None}

    def wait_idle(self, timeout: float | None = None) -> bool:
        return True

    def close(self) -> None:
        pass


def make_speaker(section: AudioSection) -> Speaker:
    """The node's speaker from ``[audio]``: espeak-ng and aplay ("auto", "espeak", "wav") or silence ("none")."""
    if section.backend == "none":
        return NullSpeaker()
    missing = [p for p in ((APLAY,) if section.backend == "wav" else (ESPEAK, APLAY)) if shutil.which(p) is None]
    if missing:
        # said once here; each prompt then fails quietly inside the worker until the retry finds them
        log.warning(
            "audio: %s not installed (apt-get install %s); voice prompts will be silent",
            " and ".join(missing),
            " ".join(_PACKAGES[p] for p in missing),
        )
    return EspeakSpeaker(section, warned=bool(missing))
