"""Offline speech synthesis with espeak-ng, in-process, deterministic.

The `espeakng-loader` package ships the espeak-ng shared library and its voice
data; this module drives it through ctypes in synchronous mode (the library
renders at 22,050 Hz and hands int16 chunks to a callback) and resamples the
result to 16 kHz with a polyphase filter (`scipy.signal.resample_poly`).

Decision: a fresh library instance per utterance. espeak-ng keeps hidden
synthesis state between utterances (pitch-flutter phase, automatic gain,
cycle counters, breath-noise resonators) and seeds its noise generator from
the clock, so the same text with the same voice renders differently depending
on what was spoken before and when. Datasets generated from a seed must not
depend on generation order, so every call loads a private copy of the library
(`dlopen` of a file copied once per process, so no other user of the packaged
library shares its reference count), initialises it, fixes its noise seed,
speaks once and unloads it (`dlclose` resets all static state). This costs
about 5 ms per utterance and makes `synthesize` a pure function of its
arguments. A library instance is process-global state, so a pool of engines,
each with its own copy of the library file, lets up to `NUM_ENGINES` threads
synthesise at once (ctypes releases the GIL during the C calls) while no two
threads ever share an instance.
"""

from __future__ import annotations

import atexit
import ctypes
import dataclasses
import functools
import math
import os
import queue
import shutil
import tempfile

import numpy as np

from avjax.data.io import audio as audio_io

SAMPLE_RATE = 16_000
"""Output sample rate of `synthesize` in Hz."""

MIN_RATE, MAX_RATE = 80, 450
"""Speaking rate range accepted by espeak-ng, in words per minute."""

MIN_PITCH, MAX_PITCH = 0, 99
"""Base pitch range accepted by espeak-ng (0 = lowest, 50 = the voice's own)."""

# Constants from espeak-ng's speak_lib.h.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_ESPEAK_CHARS_UTF8 = 1
_ESPEAK_RATE = 1
_ESPEAK_PITCH = 3
_EE_OK = 0

_SYNTH_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


@dataclasses.dataclass(frozen=True)
class VoiceSetting:
  """One speaker: espeak-ng voice name (optionally `+variant`), rate, pitch.

  Attributes:
    voice: espeak-ng voice, e.g. "en", "en-us", "en+f3" (language voice
      file name, case-insensitive, plus an optional variant from
      `espeak-ng-data/voices/!v`).
    rate: speaking rate in words per minute, in [MIN_RATE, MAX_RATE].
    pitch: base pitch in [MIN_PITCH, MAX_PITCH].
  """

  voice: str
  rate: int
  pitch: int


VOICE_SETTINGS: tuple[VoiceSetting, ...] = (
    VoiceSetting("en", 175, 50),
    VoiceSetting("en-us", 160, 45),
    VoiceSetting("en+f3", 170, 60),
    VoiceSetting("en+m3", 150, 35),
    VoiceSetting("en+f2", 185, 70),
    VoiceSetting("en-gb-scotland", 165, 50),
    VoiceSetting("en-029", 155, 55),
    VoiceSetting("en-gb-x-rp", 180, 40),
    VoiceSetting("en-us-nyc", 190, 50),
    VoiceSetting("en-us+f4", 175, 65),
    VoiceSetting("en+m1", 145, 30),
    VoiceSetting("en+klatt", 160, 50),
)
"""Twelve speakers (8 voice timbres x accents) used by the AV-digits builder."""


def data_path() -> str:
  """Directory of the espeak-ng voice data shipped by `espeakng-loader`."""
  try:
    import espeakng_loader  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise ImportError(
        "avjax.data.builders.av_digits.speech needs the `espeakng-loader` package "
        "(pip install espeakng-loader)"
    ) from e
  return espeakng_loader.get_data_path()


def _library_path() -> str:
  import espeakng_loader  # pylint: disable=import-outside-toplevel

  path = espeakng_loader.get_library_path()
  if not os.path.isfile(path):
    raise RuntimeError(f"espeak-ng library not found at {path}")
  return path


def _private_temp_dir(prefix: str) -> str:
  """A temporary directory removed when the creating process exits.

  Forked children inherit atexit handlers; the pid check keeps a child
  from deleting files its parent still uses.
  """
  directory = tempfile.mkdtemp(prefix=prefix)
  owner = os.getpid()

  def cleanup():
    if os.getpid() == owner:
      shutil.rmtree(directory, ignore_errors=True)

  atexit.register(cleanup)
  return directory


@functools.lru_cache(maxsize=1)
def _engine_data_path() -> str:
  """The voice data as the engines see it: with lower-case voice aliases.

  espeak-ng lower-cases a requested voice name before looking for its file,
  so "gmw/en-US" is only found after a scan of every voice file (several
  ms per fresh instance). This builds, once per process, a directory of
  symbolic links to the packaged data whose `lang/` tree also holds a
  lower-case link for each voice file. Falls back to the packaged
  directory where links cannot be made.
  """
  source = data_path()
  target = _private_temp_dir("avjax_espeak_data_")
  try:
    for entry in os.listdir(source):
      if entry != "lang":
        os.symlink(os.path.join(source, entry), os.path.join(target, entry))
    lang = os.path.join(source, "lang")
    for directory, _, files in os.walk(lang):
      mirror = os.path.join(target, "lang", os.path.relpath(directory, lang))
      os.makedirs(mirror, exist_ok=True)
      for name in files:
        for alias in {name, name.lower()}:
          os.symlink(os.path.join(directory, name), os.path.join(mirror, alias))
  except OSError:
    return source
  return target


@functools.lru_cache(maxsize=1)
def available_variants() -> tuple[str, ...]:
  """Names of the voice variants usable after `+` in a voice name."""
  variant_dir = os.path.join(data_path(), "voices", "!v")
  return tuple(sorted(os.listdir(variant_dir)))


class _UnknownVoice(LookupError):
  """espeak-ng found no voice of the given name."""


class _Engine:
  """One private espeak-ng copy, reloaded per utterance (module docstring)."""

  def __init__(self, slot: int):
    self._slot = slot
    self._private_copy: str | None = None
    self._chunks: list[np.ndarray] = []
    # Kept alive for as long as any instance may call it.
    self._callback = _SYNTH_CALLBACK(self._collect)

  def _collect(self, wav, num_samples, _events) -> int:
    if wav and num_samples > 0:
      self._chunks.append(
          np.ctypeslib.as_array(wav, shape=(num_samples,)).copy()
      )
    return 0  # 0 = continue synthesis

  def _library_copy(self) -> str:
    if self._private_copy is None or not os.path.exists(self._private_copy):
      source = _library_path()
      directory = _private_temp_dir("avjax_espeak_")
      target = os.path.join(directory, f"libespeak-ng-avjax-{self._slot}.so")
      shutil.copyfile(source, target)
      self._private_copy = target
    return self._private_copy

  def _open(self) -> tuple[ctypes.CDLL, int]:
    """Loads and initialises a fresh instance; returns (library, Hz)."""
    try:
      lib = ctypes.CDLL(self._library_copy(), mode=os.RTLD_LOCAL)
    except OSError as e:
      raise RuntimeError(
          f"could not load the espeak-ng library copied from "
          f"{_library_path()} into a temporary directory (if it is "
          f"mounted noexec, point TMPDIR elsewhere): {e}"
      ) from e
    lib.espeak_Initialize.argtypes = [
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
    ]
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetVoiceByName.restype = ctypes.c_int
    lib.espeak_SetParameter.argtypes = [
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int,
    ]
    lib.espeak_SetParameter.restype = ctypes.c_int
    lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
    lib.espeak_Synth.argtypes = [
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_uint,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.c_uint,
        ctypes.c_void_p,
        ctypes.c_void_p,
    ]
    lib.espeak_Synth.restype = ctypes.c_int
    lib.espeak_Synchronize.restype = ctypes.c_int
    native_rate = lib.espeak_Initialize(
        _AUDIO_OUTPUT_SYNCHRONOUS, 0, _engine_data_path().encode(), 0
    )
    if native_rate <= 0:
      self._close(lib)
      raise RuntimeError(
          f"espeak_Initialize failed (returned {native_rate}) with data "
          f"path {data_path()}"
      )
    lib.espeak_SetSynthCallback(self._callback)
    return lib, native_rate

  @staticmethod
  def _close(lib: ctypes.CDLL) -> None:
    lib.espeak_Terminate()
    import _ctypes  # pylint: disable=import-outside-toplevel

    _ctypes.dlclose(lib._handle)  # pylint: disable=protected-access

  def speak(
      self, text: str, voice: str, rate: int, pitch: int, seed: int
  ) -> tuple[np.ndarray, int]:
    """Returns (int16 samples at the native rate, native rate in Hz)."""
    lib, native_rate = self._open()
    try:
      if lib.espeak_SetVoiceByName(voice.encode()) != _EE_OK:
        raise _UnknownVoice(voice)
      lib.espeak_SetParameter(_ESPEAK_RATE, rate, 0)
      lib.espeak_SetParameter(_ESPEAK_PITCH, pitch, 0)
      lib.espeak_ng_SetRandSeed(seed)
      encoded = text.encode("utf-8") + b"\0"
      self._chunks = []
      status = lib.espeak_Synth(
          encoded,
          len(encoded),
          0,
          _POS_CHARACTER,
          0,
          _ESPEAK_CHARS_UTF8,
          None,
          None,
      )
      if status != _EE_OK:
        raise RuntimeError(
            f"espeak_Synth failed with status {status} for {text!r}"
        )
      lib.espeak_Synchronize()
      chunks, self._chunks = self._chunks, []
    finally:
      self._close(lib)
    samples = np.concatenate(chunks) if chunks else np.zeros((0,), np.int16)
    return samples.astype(np.int16, copy=False), native_rate


class _EnginePool:
  """Independent engines, one per concurrent caller (each has a copy)."""

  def __init__(self, size: int):
    self._free: queue.SimpleQueue[_Engine] = queue.SimpleQueue()
    for slot in range(size):
      self._free.put(_Engine(slot))

  def speak(self, *args) -> tuple[np.ndarray, int]:
    engine = self._free.get()
    try:
      return engine.speak(*args)
    finally:
      self._free.put(engine)


NUM_ENGINES = max(1, min(4, os.cpu_count() or 1))
"""Utterances that can be synthesised at once (threads calling `synthesize`)."""

_POOL = _EnginePool(NUM_ENGINES)


@functools.lru_cache(maxsize=1)
def _language_voices() -> dict[str, str]:
  """Lower-case voice file name -> identifier ("en-us" -> "gmw/en-US")."""
  root = os.path.join(data_path(), "lang")
  voices = {}
  for directory, _, files in os.walk(root):
    for name in files:
      identifier = os.path.relpath(os.path.join(directory, name), root)
      voices[name.lower()] = identifier
      voices[identifier.lower()] = identifier
  return voices


def _resolve_voice(voice: str) -> str:
  """Maps "en-us+f4" to the voice file path "gmw/en-us+f4" when it can.

  A path with its directory lets espeak-ng load the voice file directly
  (through the lower-case links of `_engine_data_path`) instead of scanning
  every voice file first; names not found here are passed on unchanged
  (espeak-ng also matches the voices' display names).
  """
  base, _, variant = voice.partition("+")
  identifier = _language_voices().get(base.lower(), base).lower()
  return identifier + ("+" + variant if variant else "")


def _check_voice(voice: str) -> None:
  if not isinstance(voice, str) or not voice:
    raise ValueError(f"voice must be a non-empty string, got {voice!r}")
  if "+" in voice:
    variant = voice.split("+", 1)[1]
    variants = available_variants()
    if variant not in variants:
      raise ValueError(
          f"unknown espeak-ng voice variant {variant!r} in voice "
          f"{voice!r}; available variants: {', '.join(variants)}"
      )


def trim_silence(samples: np.ndarray, threshold: int = 64) -> np.ndarray:
  """Drops leading and trailing samples with |x| <= threshold.

  Args:
    samples: int16 [N].
    threshold: amplitude (int16 units) at or below which a sample is silent.

  Returns:
    int16 [M], M <= N; empty when every sample is silent.
  """
  loud = np.flatnonzero(np.abs(samples.astype(np.int32)) > threshold)
  if loud.size == 0:
    return samples[:0]
  return samples[loud[0] : loud[-1] + 1]


def synthesize(
    text: str,
    voice: str = "en",
    rate: int = 175,
    pitch: int = 50,
    seed: int = 0,
    trim: bool = True,
) -> np.ndarray:
  """Speaks `text` with espeak-ng and returns 16 kHz int16 samples.

  Deterministic: the same arguments always give the same samples, whatever
  was synthesised before (see the module docstring). Thread-safe.

  Args:
    text: UTF-8 text to speak (non-empty).
    voice: espeak-ng voice name, e.g. "en", "en-us", "en+f3".
    rate: words per minute in [MIN_RATE, MAX_RATE].
    pitch: base pitch in [MIN_PITCH, MAX_PITCH].
    seed: seed of espeak-ng's breath-noise generator (voices with breath,
      such as the female variants, change slightly with it).
    trim: drop leading/trailing silence (|x| <= 64).

  Returns:
    int16 [N] at SAMPLE_RATE Hz.

  Raises:
    ValueError: empty text, unknown voice or variant, rate or pitch out of
      range.
    RuntimeError: the espeak-ng library cannot be loaded or initialised.
  """
  if not isinstance(text, str) or not text.strip():
    raise ValueError(f"text must be a non-empty string, got {text!r}")
  _check_voice(voice)
  if not MIN_RATE <= rate <= MAX_RATE:
    raise ValueError(f"rate {rate} outside [{MIN_RATE}, {MAX_RATE}] wpm")
  if not MIN_PITCH <= pitch <= MAX_PITCH:
    raise ValueError(f"pitch {pitch} outside [{MIN_PITCH}, {MAX_PITCH}]")
  try:
    samples, native_rate = _POOL.speak(
        text, _resolve_voice(voice), int(rate), int(pitch), int(seed)
    )
  except _UnknownVoice:
    names = sorted(k for k in _language_voices() if "/" not in k)
    raise ValueError(
        f"unknown espeak-ng voice {voice!r}; language "
        f"voices: {', '.join(names)}"
    ) from None
  if trim:
    samples = trim_silence(samples)
  return audio_io.resample(samples, native_rate, SAMPLE_RATE)


def synthesize_setting(
    text: str, setting: VoiceSetting, seed: int = 0, trim: bool = True
) -> np.ndarray:
  """`synthesize` with a `VoiceSetting`; int16 [N] at 16 kHz."""
  return synthesize(
      text, setting.voice, setting.rate, setting.pitch, seed=seed, trim=trim
  )
