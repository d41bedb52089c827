"""avjax.inference: loading workdirs, embedding files, search, sync offsets.

Workdirs: TSTL-CA is trained for real by the loop (20 steps, so that its
embeddings tell items apart and metrics.json holds the evaluation's R@1);
CMD and Synchformer get a workdir as the loop writes it holding their
initial parameters (``_init_only_workdir``): their tests compare inference
with the method's own evaluation code on the same parameters, which needs
no training, and one CMD training step takes a minute to compile here.
A trained Synchformer workdir read through mp4 files is checked on the
Synchformer notebook's quick run (tests/test_notebooks.py), the suite's one.
"""

from __future__ import annotations

import json
import os
import shutil

import jax
import numpy as np
import pytest
import soundfile
from PIL import Image

import avjax
from avjax import inference
from avjax import methods
from avjax.config_utils import load_config_file
from avjax.data.builders.av_digits import digits as digits_lib
from avjax.data.io import audio as audio_io
from avjax.data.io import video as video_lib
from avjax.data.pipeline import features as features_lib
from avjax.data.pipeline import sources
from avjax.inference import records as records_lib
from avjax.inference import sync as sync_inference
from avjax.train import checkpoint as checkpoint_lib
from avjax.train import loop
from avjax.train.stages import StageScheduler
from avjax.train.state import TrainState

from eval_helpers import embeddings
from eval_helpers import predictions
from sync_helpers import write_eval_clip

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(name: str, arg: str, data_dir: str):
  config = load_config_file(os.path.join(ROOT, "configs", f"{name}.py"), arg)
  config.data.data_dir = data_dir
  return config


def _init_only_workdir(config, workdir: str, step: int = 1, batch=None) -> str:
  """A workdir laid out as the loop writes it, with initial parameters.

  config.json, and an orbax checkpoint at ``step`` of the full train state
  (params, optimiser state, RNG) with the loop's meta. ``batch``: an
  example batch for the shapes (default: the first training batch).
  """
  method = methods.get_method(config)
  if batch is None:
    batch = next(method.train_iterator(config.data.batch_size, 0, 0, 1))
  rng = jax.random.PRNGKey(config.seed)
  try:  # Jitted: eager Flax init of conv towers takes ~25 s on 2 cores.
    params = jax.jit(method.init_params)(rng, batch)
  except jax.errors.JAXTypeError:  # init_params reads values (np.asarray).
    params = method.init_params(rng, batch)
  run = methods.RunInfo.from_config(config)
  tx = loop.stage_optimizers(method, run)[0][0]
  state = TrainState.create(params, tx, jax.random.PRNGKey(1))
  ckpt = checkpoint_lib.Checkpointer(os.path.join(workdir, "checkpoints"))
  ckpt.save(
      step,
      state.checkpoint_tree(),
      {
          "stage": 0,
          "config": loop.run_fingerprint(config),
          "config_format": 2,
          "avjax_version": avjax.__version__,
      },
  )
  ckpt.close()
  with open(os.path.join(workdir, "config.json"), "w", encoding="utf-8") as f:
    f.write(config.to_json_best_effort(indent=2))
  method.save_artifacts(workdir)
  return workdir


@pytest.fixture(scope="module")
def tstl(tmp_path_factory, av_digits_pairs_dir):
  """(workdir, final test metrics) of a 20-step TSTL-CA run."""
  workdir = str(tmp_path_factory.mktemp("tstl"))
  config = _config("tstl_ca", "quick,one_stage,steps=20", av_digits_pairs_dir)
  config.checkpoint_every = 10
  metrics = loop.train_and_evaluate(config, workdir)
  return workdir, metrics


@pytest.fixture(scope="module")
def tstl_model(tstl):
  return inference.load(tstl[0])


@pytest.fixture(scope="module")
def pairs_test(av_digits_pairs_dir):
  source = sources.load_source(
      "av_digits/pairs", "test", data_dir=av_digits_pairs_dir
  )
  return [source[i] for i in range(len(source))]


# Loading ---------------------------------------------------------------------
def test_load_restores_the_newest_params_without_optimiser_state(tstl):
  workdir, _ = tstl
  model = inference.load(workdir)
  assert model.step == 20 and model.config.method == "tstl_ca"
  assert inference.load(workdir, step=10).step == 10
  # Same arrays as the loop's own restore of the full state at step 20.
  ckpt = checkpoint_lib.Checkpointer(os.path.join(workdir, "checkpoints"))
  meta = ckpt.read_meta(20)
  full = ckpt._manager.restore(  # pylint: disable=protected-access
      20,
      args=checkpoint_lib.ocp.args.Composite(
          state=checkpoint_lib.ocp.args.StandardRestore()
      ),
  ).state
  ckpt.close()
  assert meta["avjax_version"] == avjax.__version__
  assert set(full) >= {"params", "opt_state"}
  jax.tree.map(
      np.testing.assert_array_equal,
      jax.device_get(model.params),
      jax.device_get(full["params"]),
  )
  assert not hasattr(model, "opt_state")
  with pytest.raises(inference.WorkdirError, match="no checkpoint at step 7"):
    inference.load(workdir, step=7)


def test_workdir_errors_name_the_workdir(tstl, tmp_path):
  workdir, _ = tstl
  empty = tmp_path / "no_ckpt"
  empty.mkdir()
  shutil.copy(os.path.join(workdir, "config.json"), empty / "config.json")
  with pytest.raises(inference.WorkdirError, match="no checkpoints") as e:
    inference.load(empty)
  assert str(empty) in str(e.value)
  with pytest.raises(inference.WorkdirError, match="config.json"):
    inference.load(tmp_path)

  other = tmp_path / "other_version"
  shutil.copytree(workdir, other)
  meta_path = other / "checkpoints" / "20" / "meta" / "metadata"
  meta = json.loads(meta_path.read_text())
  meta["avjax_version"] = "0.0.1"
  meta_path.write_text(json.dumps(meta))
  with pytest.raises(inference.WorkdirError, match="avjax 0.0.1") as e:
    inference.load(other)
  assert str(other) in str(e.value)
  assert inference.load(other, allow_other_version=True).step == 20

  damaged = tmp_path / "damaged"
  shutil.copytree(workdir, damaged)
  for root, _, files in os.walk(damaged / "checkpoints" / "20" / "state"):
    for f in files:
      if f != "_METADATA":
        with open(os.path.join(root, f), "wb") as handle:
          handle.write(b"\0garbage")
  with pytest.raises(inference.WorkdirError, match="damaged") as e:
    inference.load(damaged)
  assert str(damaged) in str(e.value) and "step 20" in str(e.value)


# Embedding and search --------------------------------------------------------
def test_tstl_embed_equals_evaluation_and_search_gives_its_r1(
    tstl, tstl_model, pairs_test
):
  _, metrics = tstl
  model = tstl_model
  audio = model.embed("audio", [r["audio"] for r in pairs_test])
  image = model.embed("visual", [r["image"] for r in pairs_test])
  assert audio.dtype == np.float32 and audio.shape == (len(pairs_test), 64)
  ref = embeddings(model.method, model.params, "test", ("audio", "visual"))
  np.testing.assert_allclose(audio, ref["audio"], atol=1e-6, rtol=0)
  np.testing.assert_allclose(image, ref["visual"], atol=1e-6, rtol=0)
  # metrics.json: the loop's final evaluation of these very params.
  labels = np.asarray([r["label"] for r in pairs_test])
  for q, g, key in (
      (audio, image, "r1_audio2visual"),
      (image, audio, "r1_visual2audio"),
  ):
    top = model.search(q, g, k=1).indices[:, 0]
    assert np.mean(labels[top] == labels) == pytest.approx(metrics[key])
  assert 0.15 < metrics["r1_audio2visual"]  # trained: above chance (0.1)


def test_search_against_numpy_reference_and_gallery_roundtrip(tmp_path):
  rng = np.random.default_rng(0)
  q = rng.normal(size=(7, 5)).astype(np.float32)
  g = rng.normal(size=(30, 5)).astype(np.float32)
  for metric in ("euclidean", "cosine"):
    got = inference.search(q, g, k=4, metric=metric, block=3)
    if metric == "euclidean":
      score = -np.sqrt(((q[:, None] - g[None]) ** 2).sum(-1))
    else:
      qn = q / np.linalg.norm(q, axis=1, keepdims=True)
      gn = g / np.linalg.norm(g, axis=1, keepdims=True)
      score = qn @ gn.T
    want = np.argsort(-score, axis=1)[:, :4]
    np.testing.assert_array_equal(got.indices, want)
    np.testing.assert_allclose(
        got.scores, np.take_along_axis(score, want, 1), atol=1e-5
    )
  names = [f"item{i}.png" for i in range(30)]
  path = inference.Gallery(g, names, "image", "euclidean").save(tmp_path / "g")
  back = inference.Gallery.load(path)
  np.testing.assert_array_equal(back.embeddings, g)
  assert back.names == names and back.metric == "euclidean"
  hit = inference.search(q, back, k=2)
  assert hit.names[0] == [names[j] for j in hit.indices[0]]


def _write_wav(path, samples, rate):
  soundfile.write(str(path), samples, rate, subtype="PCM_16")
  return str(path)


def test_other_rates_channels_and_sizes_match_the_training_format(
    tstl_model, pairs_test, tmp_path
):
  """Same content at 22,050 Hz, 44,100 Hz stereo and 96x96 RGB.

  Tolerance: a 16 kHz int16 wav gives exactly the array's embedding. Other
  rates pass two polyphase resamplings (the test's up, the pipeline's down),
  whose transition bands remove part of the clips' noise just below 8 kHz,
  the top mel bands; a 96x96 digit is the 8x8 source resized twice. Each
  such input must stay closer to its own original's embedding than
  TOLERANCE x the median distance between two different test items
  (measured after 20 steps: audio at most 0.22 x, images 0.1 x), and find
  its own original as nearest neighbour among all test items.
  """
  tolerance = 0.3
  model = tstl_model
  rec = pairs_test[:4]
  wave = [r["audio"] for r in rec]
  files16 = [
      _write_wav(tmp_path / f"a{i}.wav", w, 16000) for i, w in enumerate(wave)
  ]
  files22 = [
      _write_wav(
          tmp_path / f"b{i}.wav", audio_io.resample(w, 16000, 22050), 22050
      )
      for i, w in enumerate(wave)
  ]
  files44 = [
      _write_wav(
          tmp_path / f"c{i}.flac",
          np.stack([audio_io.resample(w, 16000, 44100)] * 2, axis=1),
          44100,
      )
      for i, w in enumerate(wave)
  ]
  np.testing.assert_array_equal(
      model.embed("audio", files16), model.embed("audio", wave)
  )
  everything = model.embed("audio", [r["audio"] for r in pairs_test])
  for files in (files22, files44):
    _assert_same_content(model.embed("audio", files), everything, tolerance)

  images, _ = digits_lib.load_digits()
  files96 = []
  for i, im in enumerate(images[:40]):
    path = tmp_path / f"d{i}.png"
    big = digits_lib.resize_digit(im, 96)
    Image.fromarray(np.stack([big] * 3, axis=-1)).save(path)
    files96.append(str(path))
  small = [digits_lib.resize_digit(im, 32) for im in images[:40]]
  _assert_same_content(
      model.embed("visual", files96), model.embed("visual", small), tolerance
  )


def _assert_same_content(got, originals, tolerance):
  """Row i of ``got`` is near row i of ``originals`` (see the caller)."""
  dist = np.linalg.norm(got[:, None] - originals[None], axis=-1)
  pairwise = np.linalg.norm(originals[:, None] - originals[None], axis=-1)
  spread = np.median(pairwise[np.triu_indices(len(originals), 1)])
  own = dist[np.arange(len(got)), np.arange(len(got))]
  assert own.max() < tolerance * spread, own / spread
  np.testing.assert_array_equal(np.argmin(dist, axis=1), np.arange(len(got)))


def test_bad_inputs_are_errors_naming_the_file(
    tstl_model, pairs_test, tmp_path
):
  model = tstl_model
  not_audio = tmp_path / "notes.wav"
  not_audio.write_text("this is not a waveform\n" * 20)
  empty = tmp_path / "empty.wav"
  empty.write_bytes(b"")
  no_samples = _write_wav(
      tmp_path / "zero.wav", np.zeros((0,), np.int16), 16000
  )
  pixel = tmp_path / "pixel.png"
  Image.fromarray(np.full((1, 1), 200, np.uint8)).save(pixel)
  good = _write_wav(tmp_path / "good.wav", pairs_test[0]["audio"], 16000)
  for bad in (not_audio, empty, no_samples):
    with pytest.raises(inference.UnreadableFileError) as e:
      model.embed("audio", [good, str(bad)])
    assert str(bad) in str(e.value)
  with pytest.raises(inference.UnreadableFileError, match="too small") as e:
    model.embed("visual", [str(pixel)])
  assert str(pixel) in str(e.value)
  emb, skipped = model.embed(
      "audio", [str(not_audio), good, str(empty)], skip_bad_files=True
  )
  assert emb.shape == (1, 64)
  np.testing.assert_allclose(
      emb, model.embed("audio", [good]), atol=1e-6, rtol=0
  )
  assert [p for p, _ in skipped] == [str(not_audio), str(empty)]
  with pytest.raises(ValueError, match="modality 'speech'"):
    model.embed("speech", [good])


def test_load_takes_a_step_string_and_never_warns_about_metadata(tstl, caplog):
  workdir, _ = tstl
  caplog.set_level("WARNING")
  assert inference.load(workdir, step="10").step == 10
  # orbax's "Metadata file does not exist" came on every load.
  assert not [r for r in caplog.records if "Metadata" in r.getMessage()]
  with pytest.raises(ValueError, match="step must be a checkpoint step"):
    inference.load(workdir, step="ten")
  with pytest.raises(inference.WorkdirError, match="is a file"):
    inference.load(os.path.join(workdir, "config.json"))


def test_gallery_records_its_model_and_refuses_another(
    tstl, tstl_model, pairs_test, tmp_path
):
  model = tstl_model
  images = [r["image"] for r in pairs_test[:6]]
  path = model.gallery("visual", images).save(tmp_path / "g.npz")
  saved = inference.Gallery.load(path)
  assert saved.model == model.identity and saved.modality == "visual"
  assert set(saved.model) >= {"method", "fingerprint", "step"}
  queries = model.embed("audio", [r["audio"] for r in pairs_test[:3]])
  want = model.search(queries, saved.embeddings, k=3)
  got = model.search(queries, path, k=3, query_modality="audio")
  np.testing.assert_array_equal(got.indices, want.indices)

  other_step = inference.load(tstl[0], step=10)
  with pytest.raises(inference.GalleryMismatchError) as e:
    other_step.search(queries, path)
  assert path in str(e.value) and "step: gallery 20, model 10" in str(e.value)
  other_step.search(queries, path, allow_other_model=True)
  # Another method / config (as from another workdir): each field named.
  foreign = inference.Gallery.load(path)
  foreign.model = dict(foreign.model, method="avc", fingerprint="0" * 16)
  with pytest.raises(inference.GalleryMismatchError, match="method: gallery"):
    model.search(queries, foreign)
  # visual -> visual: the gallery's modality is not the one paired with
  # visual queries.
  with pytest.raises(inference.GalleryMismatchError, match="holds visual"):
    model.search(
        model.embed("visual", images[:2]), path, query_modality="visual"
    )
  model.search(
      model.embed("visual", images[:2]),
      path,
      query_modality="visual",
      allow_other_modality=True,
  )
  # A gallery saved before provenance was recorded.
  legacy = str(tmp_path / "legacy.npz")
  np.savez(
      legacy,
      embeddings=saved.embeddings,
      names=np.asarray(saved.names),
      modality=np.asarray("visual"),
      metric=np.asarray("cosine"),
  )
  with pytest.raises(inference.GalleryMismatchError, match="does not record"):
    model.search(queries, legacy)
  model.search(queries, legacy, allow_other_model=True)


def test_skipped_files_keep_names_aligned_and_are_listed(
    tstl_model, pairs_test, tmp_path
):
  model = tstl_model
  files = []
  for i in range(4):
    files.append(str(tmp_path / f"d{i}.png"))
    Image.fromarray(pairs_test[i]["image"]).save(files[-1])
  bad = tmp_path / "bad.png"
  bad.write_text("not an image")
  inputs = [files[0], str(bad), files[1], files[2], files[3]]
  names = ["zero", "broken", "one", "two", "three"]
  gallery = model.gallery("visual", inputs, names=names, skip_bad_files=True)
  assert gallery.names == ["zero", "one", "two", "three"]
  np.testing.assert_allclose(
      gallery.embeddings, model.embed("visual", files), atol=1e-6, rtol=0
  )
  assert [n for n, _ in gallery.skipped] == [str(bad)]
  # Nothing readable: [0, E] embeddings, and a gallery is an error.
  emb, skipped = model.embed("visual", [str(bad)], skip_bad_files=True)
  assert emb.shape == (0, 64) and [n for n, _ in skipped] == [str(bad)]
  with pytest.raises(ValueError, match="no readable visual input") as e:
    model.gallery("visual", [str(bad)], skip_bad_files=True)
  assert str(bad) in str(e.value)


def test_truncated_wav_string_input_and_directory_are_named(
    tstl_model, pairs_test, tmp_path
):
  model = tstl_model
  good = _write_wav(tmp_path / "good.wav", pairs_test[0]["audio"], 16000)
  # One path as a string is one input (it was read character by character).
  np.testing.assert_array_equal(
      model.embed("audio", good), model.embed("audio", [good])
  )
  data = open(good, "rb").read()
  truncated = tmp_path / "truncated.wav"
  truncated.write_bytes(data[: len(data) // 2])  # the header promises more
  with pytest.raises(inference.UnreadableFileError, match="truncated") as e:
    model.embed("audio", [str(truncated)])
  assert str(truncated) in str(e.value)
  with pytest.raises(inference.UnreadableFileError, match="directory") as e:
    model.embed("audio", [str(tmp_path)])
  assert str(tmp_path) in str(e.value)
  with pytest.raises(inference.UnreadableFileError, match="sample rate"):
    model.embed("audio", [(pairs_test[0]["audio"], -16000)])


def test_records_take_unsigned_audio_and_float_images_at_their_scale():
  spec = records_lib.RecordSpec(
      "x", audio_samples=16000, image_size=(32, 32), image_channels=1
  )
  rng = np.random.default_rng(2)
  # 8-bit WAV samples are unsigned around 128: (x - 128) * 256 in int16.
  wave8 = rng.integers(0, 256, 16000, dtype=np.uint8)
  want = (wave8.astype(np.int16) - 128) * 256
  got, _ = records_lib.audio_record(wave8, 16000, spec, "w")
  np.testing.assert_array_equal(got, want)
  got, _ = records_lib.audio_record(
      np.stack([wave8, wave8], axis=1), 16000, spec, "w"
  )
  np.testing.assert_array_equal(got, want)
  # Float audio at int16 scale is an error, not a clipped square wave.
  with pytest.raises(inference.UnreadableFileError, match="peak") as e:
    records_lib.audio_record(want.astype(np.float32), 16000, spec, "loud")
  assert "loud" in str(e.value)
  for rate in (-16000, 0, 16000.5, "fast"):
    with pytest.raises(inference.UnreadableFileError, match="sample rate"):
      records_lib.audio_record(want, rate, spec, "w")
  # Float images in [0, 1] are scaled by 255; others must lie in [0, 255].
  image = rng.integers(0, 256, (32, 32), dtype=np.uint8)
  np.testing.assert_array_equal(
      records_lib.image_record(image / 255.0, (32, 32), 1, "i"), image
  )
  np.testing.assert_array_equal(
      records_lib.image_record(image.astype(np.float32), (32, 32), 1, "i"),
      image,
  )
  np.testing.assert_array_equal(
      records_lib.image_record(image.astype(np.uint16) * 257, (32, 32), 1, "i"),
      image,
  )
  for bad in (image * 4.0, image - 300.0, np.full((32, 32), np.nan)):
    with pytest.raises(inference.UnreadableFileError, match="image") as e:
      records_lib.image_record(bad, (32, 32), 1, "pic")
    assert "pic" in str(e.value)


@pytest.fixture(scope="module")
def cmd_model(tmp_path_factory, av_digits_captions_dir):
  config = _config("cmd", "quick", av_digits_captions_dir)
  workdir = _init_only_workdir(config, str(tmp_path_factory.mktemp("cmd")))
  return inference.load(workdir)


@pytest.mark.slow
def test_cmd_embed_equals_evaluation_and_search_gives_its_r1(
    cmd_model, av_digits_captions_dir
):
  from avjax.eval import retrieval  # pylint: disable=import-outside-toplevel

  model = cmd_model
  source = sources.load_source(
      "av_digits/captions", "test", data_dir=av_digits_captions_dir
  )
  recs = [source[i] for i in range(len(source))]
  # A caption is its valid samples; the store's zero padding is not speech.
  speech_in = [r["audio"][: int(r["audio_length"])] for r in recs]
  s = model.embed("speech", speech_in)
  i = model.embed("image", [r["image"] for r in recs])
  ref = embeddings(model.method, model.params, "test", ("speech", "image"))
  np.testing.assert_allclose(s, ref["speech"], atol=1e-6, rtol=0)
  np.testing.assert_allclose(i, ref["image"], atol=1e-6, rtol=0)
  ids = ref["image_id"]
  want = retrieval.cross_modal_retrieval_metrics(
      ref["speech"], ref["image"], ids, ids, names=("s", "i"), metric="cosine"
  )
  top = model.search(s, i, k=1).indices[:, 0]
  assert np.mean(ids[top] == ids) == pytest.approx(want["r1_s2i"])
  assert model.metric == "cosine"


# Synchformer -----------------------------------------------------------------
def _tiny_sync_config(data_dir: str):
  """The quick Synchformer config with small extractors (fast to compile)."""
  config = _config("synchformer", "quick", data_dir)
  config.data.batch_size = 4
  for part in (config.model.visual, config.model.audio, config.model.sync):
    part.update({"width": 16, "num_heads": 2})
  config.model.visual.patch_features = 8
  config.model.sync.num_layers = 1
  config.diagnostics.val_max_clips = 6
  return config


@pytest.fixture(scope="module")
def sync_model(tmp_path_factory, av_digits_dir):
  config = _tiny_sync_config(av_digits_dir.prepare("sync"))
  workdir = _init_only_workdir(config, str(tmp_path_factory.mktemp("sync")))
  return inference.load(workdir)


def _video(frames, audio_int16, fps=25.0, rate=16000):
  return video_lib.Video(
      frames=frames,
      fps=fps,
      audio=audio_int16.astype(np.float32) / 32768.0,
      sample_rate=rate,
  )


@pytest.mark.slow
def test_predict_offset_equals_evaluation_and_survives_mp4(
    sync_model, tmp_path
):
  """Eval clips as arrays: the evaluation's probabilities (1e-6). As mp4s
  (H.264 crf 12, AAC; decoded audio 23-37 dB SNR here): probabilities within
  0.02 (measured <= 0.0043 with 2.56 s crops, 0.0104 with 4.8 s ones), and
  the evaluation's offset class wherever its top-2 logit margin is >= 0.1 —
  these parameters are untrained, so some clips are near ties that codec
  noise may flip (measured margin 0.023)."""
  model = sync_model
  method = model.method
  data = method.eval_data("validation")
  want = predictions(method, model.params, "validation", ["sync_offsets"])[
      "sync_offsets"
  ]
  offsets = method.spec.offsets()
  clear, agree = 0, 0
  for n in range(len(data["offset_label"])):
    probs = np.asarray(jax.nn.softmax(want["offset"][n]))
    got = model.predict_offset(
        _video(data["video"][n], data["audio_shifted"][n])
    )
    assert len(got.windows) == 1
    np.testing.assert_allclose(got.probabilities, probs, atol=1e-6)
    assert got.offset_seconds == offsets[np.argmax(probs)]
    if n >= 6:
      continue
    path = write_eval_clip(data, n, str(tmp_path / f"clip{n}.mp4"))
    got = model.predict_offset(path, plot_path=str(tmp_path / f"e{n}.png"))
    assert os.path.getsize(got.plot) > 0
    assert np.abs(got.probabilities - probs).max() < 0.02
    top2 = np.sort(np.asarray(want["offset"][n]))[-2:]
    if top2[1] - top2[0] >= 0.1:
      clear += 1
      agree += got.offset_class == int(np.argmax(probs))
  assert clear >= 3 and agree == clear


def test_long_video_is_scanned_in_windows(sync_model):
  model = sync_model
  s = model.method.spec
  rng = np.random.default_rng(0)
  frames = rng.integers(0, 255, (200, 32, 32, 1), dtype=np.uint8)
  # Tones well below 8 kHz, so resampling to 44.1 kHz and back keeps them.
  t = np.arange(200 * 640) / 16000
  tones = sum(
      np.sin(2 * np.pi * f * t) * (1 + np.sin(2 * np.pi * r * t))
      for f, r in ((300, 0.7), (1100, 1.3), (2500, 0.4))
  )
  audio = np.round(tones * 3000).astype(np.int16)
  got = model.predict_offset(_video(frames, audio), stride_frames=40)
  starts = [0, 40, 80]  # every 40 frames, the last ending at frame 200
  assert s.crop_frames == 120
  assert [w.start_seconds for w in got.windows] == [x / s.fps for x in starts]
  for w, st in zip(got.windows, starts):
    one = model.predict_offset(
        _video(frames[st : st + 120], audio[st * 640 : (st + 120) * 640])
    )
    np.testing.assert_allclose(w.probabilities, one.probabilities, atol=1e-6)
  mean = np.mean([w.probabilities for w in got.windows], axis=0)
  np.testing.assert_allclose(got.probabilities, mean, atol=1e-12)
  assert got.offset_class == int(np.argmax(mean))
  # 50 fps / 44.1 kHz input: resampled to the model's 25 fps / 16 kHz.
  fast = np.repeat(frames, 2, axis=0)
  hi_rate = audio_io.resample(audio, 16000, 44100)
  got_fast = model.predict_offset(
      _video(fast, hi_rate, fps=50.0, rate=44100), stride_frames=40
  )
  assert len(got_fast.windows) == 3
  np.testing.assert_allclose(
      got_fast.probabilities, got.probabilities, atol=0.005
  )


def test_video_without_audio_or_too_short_is_named(sync_model, tmp_path):
  silent = str(tmp_path / "silent.mp4")
  video_lib.write_video(silent, np.zeros((70, 32, 32), np.uint8), 25.0)
  with pytest.raises(inference.UnreadableFileError, match="no audio") as e:
    sync_model.predict_offset(silent)
  assert silent in str(e.value)
  short = str(tmp_path / "short.mp4")
  video_lib.write_video(
      short,
      np.zeros((20, 32, 32), np.uint8),
      25.0,
      np.zeros((12800,), np.float32),
      16000,
  )
  with pytest.raises(inference.UnreadableFileError, match="too short") as e:
    sync_model.predict_offset(short)
  assert short in str(e.value)
  with pytest.raises(ValueError, match="do not embed"):
    sync_model.embed("audio", [silent])


def test_window_starts():
  assert sync_inference.window_starts(63, 64, 32) == []
  assert sync_inference.window_starts(64, 64, 32) == [0]
  assert sync_inference.window_starts(100, 64, 32) == [0, 32, 36]
  assert sync_inference.window_starts(128, 64, 32) == [0, 32, 64]


def test_records_pass_the_training_format_through_unchanged():
  spec = records_lib.RecordSpec(
      "x", audio_samples=16000, image_size=(32, 32), image_channels=1
  )
  rng = np.random.default_rng(1)
  wave = rng.integers(-20000, 20000, 16000, dtype=np.int16)
  got, length = records_lib.audio_record(wave, 16000, spec, "w")
  np.testing.assert_array_equal(got, wave)
  assert length == 16000
  # Float input in [-1, 1) is the int16 scaled by 1/32768: exact round trip.
  got, _ = records_lib.audio_record(wave / 32768.0, 16000, spec, "w")
  np.testing.assert_array_equal(got, wave)
  # Longer input is cropped, shorter zero-padded with its valid length.
  got, length = records_lib.audio_record(wave[:9000], 16000, spec, "w")
  assert length == 9000 and not got[9000:].any()
  image = rng.integers(0, 256, (32, 32), dtype=np.uint8)
  np.testing.assert_array_equal(
      records_lib.image_record(image, (32, 32), 1, "i"), image
  )
  rgb = np.stack([image] * 3, axis=-1)
  np.testing.assert_array_equal(
      records_lib.image_record(rgb, (32, 32), 1, "i"), image
  )
  # The builder's digit resize is resize_grey on levels x 255/16.
  digits, _ = digits_lib.load_digits()
  np.testing.assert_array_equal(
      digits_lib.resize_digit(digits[5], 32),
      digits_lib.resize_grey(digits[5] * np.float32(255.0 / 16.0), 32),
  )
  spec = records_lib.record_spec(
      load_config_file(os.path.join(ROOT, "configs", "cmd.py"), "quick").data
  )
  assert spec.audio_samples == 56000 and spec.image_size == (64, 64)


@pytest.mark.slow
def test_mama_embed_equals_evaluation_and_takes_video_files(
    av_digits_dir, tmp_path, monkeypatch
):
  config = _config("mama", "quick", av_digits_dir.prepare("video_text"))
  model = inference.load(_init_only_workdir(config, str(tmp_path / "mama")))
  source = sources.load_source(
      "av_digits/video_text", "test", data_dir=config.data.data_dir
  )
  recs = [source[i] for i in range(len(source))]
  video = model.embed("video", [r["frames"] for r in recs])
  text = model.embed("text", [r["caption"].decode() for r in recs])
  ref = embeddings(model.method, model.params, "test", ("video", "text"))
  np.testing.assert_allclose(video, ref["video"], atol=1e-6, rtol=0)
  np.testing.assert_allclose(text, ref["text"], atol=1e-6, rtol=0)
  # Text needs only the workdir: its tokenizer.json, not the dataset (which
  # would otherwise be prepared to read the tokenizer from its metadata).
  real_get_builder = sources.get_builder

  def no_prepared_data(*args, **kwargs):
    if kwargs.get("prepare", True):
      raise AssertionError("inference read the prepared dataset")
    return real_get_builder(*args, **kwargs)

  monkeypatch.setattr(sources, "get_builder", no_prepared_data)
  alone = inference.load(str(tmp_path / "mama"))
  np.testing.assert_allclose(  # another batch size: float rounding only
      alone.embed("text", [r["caption"].decode() for r in recs[:5]]),
      text[:5],
      atol=1e-5,
  )
  unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)
  want = np.argmax(unit(ref["text"]) @ unit(ref["video"]).T, axis=1)
  top = model.search(text, video, k=1).indices[:, 0]
  np.testing.assert_array_equal(top, want)
  # A directory of .txt files is a gallery of their contents, not paths.
  captions = tmp_path / "captions"
  captions.mkdir()
  for i, r in enumerate(recs[:5]):
    (captions / f"c{i}.txt").write_text(r["caption"].decode() + "\n")
  gallery = model.gallery("text", str(captions))
  assert gallery.names == [str(captions / f"c{i}.txt") for i in range(5)]
  np.testing.assert_allclose(gallery.embeddings, text[:5], atol=1e-5)
  np.testing.assert_allclose(
      model.embed("text", [str(captions / "c0.txt")]), text[:1], atol=1e-5
  )
  # A video file at 25 fps and 64x64 RGB: 8 frames sampled uniformly and
  # resized back to the stored 32x32 grey.
  frames = np.repeat(np.repeat(recs[0]["frames"], 2, 1), 2, 2)
  path = str(tmp_path / "v.mp4")
  video_lib.write_video(path, np.repeat(frames, 3, axis=0), 25.0)
  got = model.embed("video", [path])
  cos = (
      np.sum(got[0] * video[0])
      / np.linalg.norm(got[0])
      / np.linalg.norm(video[0])
  )
  assert cos > 0.99, cos


@pytest.mark.slow
def test_mama_tokenizer_is_checked_against_the_model(av_digits_dir, tmp_path):
  config = _config("mama", "quick", av_digits_dir.prepare("video_text"))
  workdir = _init_only_workdir(config, str(tmp_path / "mama"))
  path = os.path.join(workdir, "tokenizer.json")
  with open(path, encoding="utf-8") as f:
    original = f.read()
  # A word mapped beyond the model's token table (NaN embeddings before).
  tok = json.loads(original)
  rows = max(tok["model"]["vocab"].values()) + 1
  tok["model"]["vocab"]["zebra"] = rows + 5
  with open(path, "w", encoding="utf-8") as f:
    json.dump(tok, f)
  with pytest.raises(inference.WorkdirError, match=str(rows + 5)) as e:
    inference.load(workdir)
  assert path in str(e.value)
  with open(path, "w", encoding="utf-8") as f:
    f.write(original[: len(original) // 2])
  with pytest.raises(inference.WorkdirError, match="truncated") as e:
    inference.load(workdir)
  assert path in str(e.value)


@pytest.mark.slow
def test_avc_embed_equals_evaluation(av_digits_pairs_dir, pairs_test, tmp_path):
  config = _config("avc", "quick", av_digits_pairs_dir)
  raw = {k: np.stack([r[k] for r in pairs_test[:4]]) for k in pairs_test[0]}
  batch = methods.get_method(config).transform(raw)  # Shapes, not training.
  workdir = _init_only_workdir(config, str(tmp_path / "avc"), batch=batch)
  model = inference.load(workdir)
  ref = embeddings(model.method, model.params, "test", ("audio", "visual"))
  for modality, key in (("audio", "audio"), ("visual", "image")):
    got = model.embed(modality, [r[key] for r in pairs_test])
    np.testing.assert_allclose(got, ref[modality], atol=1e-6, rtol=0)
  assert model.metric == "cosine" and model.other_modality("audio") == "visual"
