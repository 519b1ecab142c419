"""The voice part of ``provision selftest``: every prompt read in Mandarin by the real espeak-ng, the prompt pack's
coverage, and one prompt played (on a lift, the entrapment prompt) for the technician to hear."""

from __future__ import annotations

import shutil
import time

from common.config import NodeConfig
from common.speech.voice import Prompt, audio_spec, make_voice, open_pack, pack_gaps
from hal import audio
from hal.espeak import ESPEAK, EspeakError, is_tonal
from provisioning import prompt
from provisioning.checks import FAIL, PASS, SKIP, Check
from provisioning.prompts import SELFTEST_PROMPT, check_prompts, role_prompts, voice_language


def wants_voice(config: NodeConfig) -> bool:
    if config.node.role in ("elevator", "kiosk"):
        return True
    meters = getattr(config.role_config, "meters", ())
    return any(getattr(getattr(m, "household", None), "chime", False) for m in meters)


def check_speech_of(config: NodeConfig, prompts: tuple[Prompt, ...]) -> Check:
    """Every prompt of the node read by the real espeak-ng in the configured voice: never a switch to English."""
    name = "speech check"
    if config.audio.backend == "wav" and shutil.which(ESPEAK) is None:
        return Check(name, SKIP, "audio.backend = wav without espeak-ng: recordings only (see prompt pack)")
    try:
        used, warning, results = check_prompts(prompts, config.audio.voice)
    except EspeakError as exc:
        return Check(name, FAIL, str(exc), hardware_error=True)
    mapped = f"; audio.voice: {warning}" if warning else ""
    failed = [r for r in results if not r.ok]
    if failed:
        first = failed[0]
        more = f" (and {len(failed) - 1} more prompts)" if len(failed) > 1 else ""
        hint = ""
        if (voice_language(config) == "en") == is_tonal(used):
            wanted = "en" if voice_language(config) == "en" else "cmn-latn-pinyin"
            hint = f"; kiosk.voice_language = {voice_language(config)!r} needs audio.voice = {wanted!r}"
        detail = f"{first.prompt.id}: {first.problems[0]}{more}{hint}{mapped}"
        return Check(name, FAIL, detail)
    texts = sum(len(r.checks) for r in results)
    sample = results[0].checks[0] if results and results[0].checks else None
    heard = f"; {results[0].prompt.id}: {sample.phonemes.splitlines()[0][:60]}" if sample else ""
    return Check(name, PASS, f"{len(results)} prompts ({texts} texts) read in {used} without a switch{heard}{mapped}")


def check_pack(config: NodeConfig, prompts: tuple[Prompt, ...]) -> Check | None:
    """The configured prompt pack: readable, in the node's language, and which prompts fall back to synthesis."""
    if config.audio.pack is None:
        return None
    name = "prompt pack"
    pack, problem = open_pack(config.audio, voice_language(config))
    if pack is None:
        return Check(name, FAIL, f"not used, every prompt is synthesised: {problem}")
    gaps = pack_gaps(pack, prompts)
    issues = f"; {len(pack.problems)} problems: {pack.problems[0]}" if pack.problems else ""
    if not gaps:
        return Check(name, PASS, f"{pack.name}: all {len(prompts)} prompts recorded{issues}")
    listed = ", ".join(f"{prompt_id} ({why})" for prompt_id, why in list(gaps.items())[:3])
    more = f" and {len(gaps) - 3} more" if len(gaps) > 3 else ""
    silent = config.audio.backend == "wav" and shutil.which(ESPEAK) is None  # nothing says what is not recorded
    result = FAIL if silent else PASS
    fallback = "SILENT (backend wav, espeak-ng not installed)" if silent else "synthesised by espeak-ng"
    return Check(name, result, f"{pack.name}: {fallback}: {listed}{more}{issues}")


def check_voice(config: NodeConfig, confirm: bool) -> list[Check]:
    """The speech check, the prompt pack, and one of the role's prompts played (the lift: the entrapment one)."""
    name = "voice prompt"
    if config.audio.backend == "none":
        return [Check(name, SKIP, "audio.backend = none")]
    prompts = role_prompts(config.node.role, config)
    checks = [check_speech_of(config, prompts)]
    if (pack_check := check_pack(config, prompts)) is not None:
        checks.append(pack_check)
    chosen = next(p for p in prompts if p.id == SELFTEST_PROMPT[config.node.role])
    speaker = audio.make_speaker(audio_spec(config.audio))
    voice = make_voice(config.audio, config.node.timezone, time.time, speaker, voice_language(config))
    volume = voice.volume()
    prompt.say(f">>> listen: the node says {chosen.id} at {volume}% volume")
    said = voice.say(chosen, chosen.examples[0] if chosen.fields else None)
    prompt.say(f"    {said}")
    # the speaker queues and never blocks the caller: give it time to finish before asking or closing
    waited = "finished" if speaker.wait_idle(15.0) else "still playing after 15 s"
    health = speaker.health()
    speaker.close()
    played = f"{chosen.id} at {volume}%"
    if health.get("unsaid"):  # backend wav: not recorded, and nothing to synthesise it
        return [*checks, Check(name, FAIL, f"{chosen.id} not said: {health.get('last_error')}")]
    if error := health.get("last_error"):
        return [*checks, Check(name, FAIL, f"audio: {error}", hardware_error=True)]
    if not confirm:
        return [*checks, Check(name, PASS, f"played {played} ({waited}; not confirmed: no terminal)")]
    if prompt.confirm(f"did you hear {chosen.id} clearly?"):
        return [*checks, Check(name, PASS, f"{played} heard, confirmed by the technician")]
    return [*checks, Check(name, FAIL, "not heard: check the speaker, amplifier, audio.volume and audio.device")]
