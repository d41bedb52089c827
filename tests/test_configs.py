"""Every documented config variant builds; real-dataset ones run end to end.

The variants come from the documentation itself, so a new config file
(``configs/*.py``) or a new variant is picked up without editing this test:

* each config docstring's ``Variants:`` / ``Arguments:`` section (one entry
  per line indented by two spaces: ``quick``, ``ave/vegas`` = two variants,
  ``steps=N``, ``noise=a|b`` = two values, ``(none)`` = no argument);
* every ``configs/<m>.py:<arg>`` in a config docstring or README.md, every
  ``--variants 'a;b'`` of a sweep command there, and README table cells
  ``(`:a`, `:b`)`` on a line naming ``configs/<m>.py``.

Placeholders ``N`` and ``r`` stand for a number (4 and 0.5); any other
placeholder (``strategy=S``) must have a concrete example in some command.

"Builds" means: ``get_config(arg)`` succeeds, its ``data.name`` resolves to
a registered builder and builder config, and the method is constructed. Each
variant reading a real dataset then trains a few steps and evaluates on the
test split, on a fixture tree in the dataset's published layout
(``manual_fixtures.TREE_WRITERS``).
"""

from __future__ import annotations

import ast
import json
import math
import re
from pathlib import Path

import jax
import pytest
from jax.experimental.compilation_cache import compilation_cache as cc

from avjax import config_utils
from avjax import methods
from avjax.data.builders import manual
from avjax.data.pipeline import sources
from avjax.train import loop
from manual_fixtures import TREE_WRITERS
from manual_fixtures import write_garbage
from manual_fixtures import write_spokencoco_tree

ROOT = Path(__file__).resolve().parents[1]
CONFIG_FILES = sorted((ROOT / "configs").glob("*.py"))
README = ROOT / "README.md"
PLACEHOLDERS = {"N": "4", "r": "0.5"}
_SECTION = re.compile(r"^(Variants|Arguments):\s*$")
_ENTRY = re.compile(r"^  (\S+)")
_CONFIG_ARG = re.compile(r"configs/(\w+)\.py(?::([^\s'\"`\\)]+))?")
_SWEEP_VARIANTS = re.compile(r"--variants\s+(['\"])([^'\"$]*)\1")
_TABLE_ARG = re.compile(r"`:([^`]+)`")


def _docstring(path: Path) -> str:
  return ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""


def _joined_lines(text: str) -> list[str]:
  """Lines of ``text`` with backslash continuations joined."""
  return text.replace("\\\n", " ").splitlines()


def section_entries(doc: str) -> list[str]:
  """First words of the entries of the Variants: / Arguments: section."""
  entries, inside = [], False
  for line in doc.splitlines():
    if _SECTION.match(line):
      inside = True
      continue
    if inside:
      if line.strip() and not line.startswith(" "):
        break
      match = _ENTRY.match(line)
      if match:
        entries.append(match.group(1))
  return entries


def expand_entry(entry: str) -> list[str]:
  """A section entry → config args ("" for "(none)"), placeholders kept."""
  if entry == "(none)":
    return [""]
  if "=" in entry:
    key, value = entry.split("=", 1)
    return [f"{key}={v}" for v in value.split("|")]
  return entry.split("/")


def command_args(text: str) -> dict[str, set[str]]:
  """{config name: args} of every command / mention in ``text``."""
  found: dict[str, set[str]] = {}
  for line in _joined_lines(text):
    names = [m.group(1) for m in _CONFIG_ARG.finditer(line)]
    for match in _CONFIG_ARG.finditer(line):
      found.setdefault(match.group(1), set()).add(match.group(2) or "")
    if len(set(names)) != 1:
      continue
    args = found[names[0]]
    for match in _SWEEP_VARIANTS.finditer(line):
      args.update(match.group(2).split(";"))
    if line.lstrip().startswith("|"):  # A README table row.
      args.update(_TABLE_ARG.findall(line))
  return found


def _is_placeholder(value: str) -> bool:
  return len(value) == 1 and value.isalpha()


def documented_args() -> dict[str, set[str]]:
  """{config name: documented args}, placeholders substituted or dropped."""
  raw: dict[str, set[str]] = {p.stem: set() for p in CONFIG_FILES}
  texts = [README.read_text(encoding="utf-8")]
  for path in CONFIG_FILES:
    doc = _docstring(path)
    texts.append(doc)
    for entry in section_entries(doc):
      raw[path.stem].update(expand_entry(entry))
  for text in texts:
    for name, args in command_args(text).items():
      raw.setdefault(name, set()).update(args)
  out = {}
  for name, args in raw.items():
    out[name] = set()
    for arg in args:
      tokens = []
      for token in filter(None, arg.split(",")):
        key, _, value = token.partition("=")
        if value and _is_placeholder(value):
          if value not in PLACEHOLDERS:
            tokens = None  # A concrete example must exist (checked below).
            break
          token = f"{key}={PLACEHOLDERS[value]}"
        tokens.append(token)
      if tokens is not None:
        out[name].add(",".join(tokens))
  return out


def placeholder_keys() -> list[tuple[str, str]]:
  """(config, key) of each non-numeric ``key=P`` placeholder entry."""
  keys = []
  for path in CONFIG_FILES:
    for entry in section_entries(_docstring(path)):
      key, _, value = entry.partition("=")
      if _is_placeholder(value) and value not in PLACEHOLDERS:
        keys.append((path.stem, key))
  return keys


DOCUMENTED = documented_args()
CASES = sorted((name, arg) for name, args in DOCUMENTED.items() for arg in args)


def _config(name: str, arg: str):
  return config_utils.load_config_file(
      str(ROOT / "configs" / f"{name}.py"), arg or None
  )


def _dataset(config) -> str:
  return sources.split_name(config.data.name)[0]


def real_dataset_cases() -> list[tuple[str, str]]:
  """One documented arg per (config, real dataset), the shortest."""
  chosen: dict[tuple[str, str], str] = {}
  for name, arg in CASES:
    try:
      data_name = _config(name, arg).data.name
      dataset = sources.split_name(data_name)[0]
    except ValueError:  # Reported by test_documented_variant_builds.
      continue
    if dataset == "av_digits":
      continue
    key = (name, data_name)
    if key not in chosen or len(arg) < len(chosen[key]):
      chosen[key] = arg
  return sorted((name, arg) for (name, _), arg in chosen.items())


def test_parser_finds_the_documented_variants():
  # Guards the parser itself: these are written in today's docs.
  for name, arg in [
      ("tstl_ca", "ave"),
      ("tstl_ca", "vegas"),
      ("tstl_ca", "steps=4"),
      ("tstl_ca", "heldout,one_stage"),
      ("cmd", "spokencoco"),
      ("cmd", "flickr8k_audio"),
      ("cmd", "noise=swap"),
      ("avc", "strategy=soft,per_class=20"),
      ("avc", "imbalance=0.5"),
      ("avc", ""),
  ]:
    assert arg in DOCUMENTED[name], (name, arg)
  assert len(DOCUMENTED) == len(CONFIG_FILES)


@pytest.mark.parametrize("name,key", placeholder_keys())
def test_placeholder_has_a_concrete_example(name, key):
  examples = [
      a
      for a in DOCUMENTED[name]
      if any(t.startswith(f"{key}=") for t in a.split(","))
  ]
  assert examples, (
      f"configs/{name}.py documents {key}=<placeholder> but no "
      "command shows a concrete value"
  )


@pytest.mark.parametrize("name,arg", CASES)
def test_documented_variant_builds(name, arg, tmp_path):
  config = _config(name, arg)
  builder = sources.get_builder(
      config.data.name, data_dir=str(tmp_path), prepare=False
  )
  assert builder.name == _dataset(config)
  method = methods.get_method(config)
  assert method.config is config


def test_real_dataset_variants_are_found():
  found = {(n, _config(n, a).data.name) for n, a in real_dataset_cases()}
  assert {
      ("tstl_ca", "ave/avcmr15"),
      ("tstl_ca", "vegas/default"),
      ("cmd", "flickr8k_audio/img224"),
      ("cmd", "spokencoco/karpathy_img224"),
  } <= found


def _shallow(node) -> None:
  """Sets every ``num_layers`` field under ``node`` to 1 (compile time)."""
  for key, value in node.items():
    if key == "num_layers":
      node[key] = 1
    elif hasattr(value, "items"):
      _shallow(value)


def _shrink_run(config, manual_dir, data_dir) -> None:
  """A few steps of batch 4 through one-layer transformers; the documented
  data path (dataset, builder config, features, splits) is kept."""
  with config.unlocked():
    _shallow(config)
    config.data.manual_dir = str(manual_dir)
    config.data.data_dir = str(data_dir)
    config.data.batch_size = 4
    config.eval_batch_size = 8
    for stage in config.stages:
      stage.steps = 2
    config.log_every = 1
    config.checkpoint_every = 2
    config.eval_every = 1 if config.get("eval_every") else 0
    if "warmup_steps" in config.optimizer:
      config.optimizer.warmup_steps = 1


@pytest.fixture(scope="module")
def compilation_cache(request, tmp_path_factory):
  """A persistent XLA cache for this module (shared by pytest-xdist
  workers): variants of one method that differ only in their dataset
  compile the same steps once. Switched off again afterwards."""
  base = tmp_path_factory.getbasetemp()
  if hasattr(request.config, "workerinput"):
    base = base.parent
  names = (
      "jax_compilation_cache_dir",
      "jax_persistent_cache_min_compile_time_secs",
      "jax_persistent_cache_min_entry_size_bytes",
  )
  saved = {n: getattr(jax.config, n) for n in names}
  cc.reset_cache()
  jax.config.update(names[0], str(base / "xla_cache_test_configs"))
  jax.config.update(names[1], 0.0)
  jax.config.update(names[2], 0)
  yield
  for name, value in saved.items():
    jax.config.update(name, value)
  cc.reset_cache()


@pytest.mark.slow
@pytest.mark.parametrize("name,arg", real_dataset_cases())
def test_real_dataset_variant_runs_end_to_end(
    name, arg, tmp_path, compilation_cache
):
  config = _config(name, arg)
  dataset = _dataset(config)
  if dataset not in TREE_WRITERS:
    pytest.fail(
        f"configs/{name}.py:{arg} reads {config.data.name!r}; add a "
        "writer of its published layout to "
        "tests/manual_fixtures.py:TREE_WRITERS"
    )
  TREE_WRITERS[dataset](tmp_path / "manual")
  _shrink_run(config, tmp_path / "manual", tmp_path / "data")
  metrics = loop.train_and_evaluate(config, str(tmp_path / "work"))
  assert metrics and all(math.isfinite(v) for v in metrics.values())
  written = json.loads((tmp_path / "work" / "metrics.json").read_text())
  assert written == pytest.approx(metrics)


def test_bad_file_options_are_config_fields(tmp_path):
  """skip_bad_files and SpokenCOCO's image_root reach the builder from the
  config, and the bad-file error names the config field to set."""
  manual_dir, image_root = tmp_path / "manual", tmp_path / "coco_images"
  write_spokencoco_tree(manual_dir, image_root=image_root)
  bad_wav = manual_dir / "SpokenCOCO" / "wavs" / "train" / "0" / "u1_0.wav"
  write_garbage(bad_wav)
  config = _config("cmd", "spokencoco")
  config.data.manual_dir = str(manual_dir)
  config.data.image_root = str(image_root)
  config.data.name = "spokencoco/karpathy_img64"  # Smaller images, same path.
  config.data.data_dir = str(tmp_path / "data_strict")
  with pytest.raises(
      manual.BadFileError, match=r"u1_0\.wav.*|--config\.data\.skip_bad_files"
  ) as e:
    methods.get_method(config)._source("train")
  assert "--config.data.skip_bad_files=True" in str(e.value)
  assert str(bad_wav) in str(e.value)
  config.data.skip_bad_files = True
  config.data.data_dir = str(tmp_path / "data_skip")
  train = methods.get_method(config)._source("train")
  assert len(train) == 4 * 2 - 1  # 4 training images, 2 captions, 1 bad.
  # Without image_root the images are looked for under manual_dir.
  config.data.image_root = None
  config.data.data_dir = str(tmp_path / "data_default_root")
  with pytest.raises(manual.MissingManualFilesError, match="train2014"):
    methods.get_method(config)._source("train")


def test_builder_argument_the_dataset_lacks_is_named(tmp_path):
  config = _config("tstl_ca", "vegas")
  config.data.image_root = "/somewhere"  # Not an argument of the builder.
  config.data.data_dir = str(tmp_path)
  with pytest.raises(ValueError, match=r"'vegas'.*image_root"):
    sources.load_config_source(config.data, "train")
