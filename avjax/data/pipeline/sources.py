"""Random-access data sources for every avjax dataset, by name.

`load_source("av_digits/pairs", "train")` finds the tfds builder registered
for "av_digits", prepares it in `array_record` format on first use (tfds
shows progress bars; a file lock keeps concurrent processes from preparing
the same dataset twice), checks the first record against the builder's
feature spec, and returns `builder.as_data_source(split)`: `len(source)` and
`source[i]` -> dict of numpy arrays / Python scalars. TensorFlow is never
imported.

Builders are registered by module path and imported only when their dataset
is asked for, so a dataset whose module (or optional dependency) is missing
does not break the others. Other modules add theirs with `register_builder`.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from avjax.data.pipeline import record_decoder

DATA_DIR_ENV = "AVJAX_DATA_DIR"
FILE_FORMAT = "array_record"

# Dataset name -> builder class, or dotted module path that defines it.
_BUILDERS: dict[str, type[tfds.core.DatasetBuilder] | str] = {
    "av_digits": "avjax.data.builders.av_digits",
    "ave": "avjax.data.builders.avcmr_features",
    "vegas": "avjax.data.builders.avcmr_features",
    "flickr8k_audio": "avjax.data.builders.flickr8k_audio",
    "spokencoco": "avjax.data.builders.spokencoco",
    "vggsound_sparse": "avjax.data.builders.sync_videos",
    "lrs3": "avjax.data.builders.sync_videos",
    "msrvtt": "avjax.data.builders.msrvtt",
}


def register_builder(
    name: str, builder: type[tfds.core.DatasetBuilder] | str
) -> None:
  """Registers a builder class, or the dotted path of a module defining it.

  Args:
    name: dataset name used by `load_source` (the part before "/").
    builder: a `tfds.core.DatasetBuilder` subclass, or a module path such
      as "avjax.data.ave" whose import defines a builder with `.name ==
      name` (imported lazily, on first use).
  """
  if not name or "/" in name:
    raise ValueError(
        f"dataset name must be non-empty without '/', got " f"{name!r}"
    )
  if not isinstance(builder, str) and not (
      isinstance(builder, type)
      and issubclass(builder, tfds.core.DatasetBuilder)
  ):
    raise TypeError(
        f"builder for {name!r} must be a tfds DatasetBuilder "
        f"subclass or a module path, got {builder!r}"
    )
  _BUILDERS[name] = builder


def registered_names() -> tuple[str, ...]:
  """Names `load_source` accepts (before any "/config")."""
  return tuple(sorted(_BUILDERS))


def builder_class(name: str) -> type[tfds.core.DatasetBuilder]:
  """The builder class registered for dataset `name` (imports its module)."""
  if name not in _BUILDERS:
    raise ValueError(
        f"unknown dataset {name!r}; registered datasets: "
        f"{', '.join(registered_names())}"
    )
  entry = _BUILDERS[name]
  if not isinstance(entry, str):
    return entry
  try:
    module = importlib.import_module(entry)
  except ImportError as e:
    raise ValueError(
        f"dataset {name!r} is registered to module {entry!r}, which could "
        f"not be imported: {e}"
    ) from e
  for value in vars(module).values():
    if (
        isinstance(value, type)
        and issubclass(value, tfds.core.DatasetBuilder)
        and getattr(value, "name", None) == name
    ):
      _BUILDERS[name] = value
      return value
  raise ValueError(f"module {entry!r} defines no tfds builder named {name!r}")


def default_data_dir() -> str:
  """$AVJAX_DATA_DIR, else ~/avjax_data."""
  return os.environ.get(DATA_DIR_ENV) or os.path.join(
      os.path.expanduser("~"), "avjax_data"
  )


def split_name(name: str) -> tuple[str, str | None]:
  """ "av_digits/pairs" -> ("av_digits", "pairs"); "ave" -> ("ave", None)."""
  dataset, _, config = name.partition("/")
  if not dataset or "/" in config:
    raise ValueError(
        f"dataset name must be 'name' or 'name/config', got " f"{name!r}"
    )
  return dataset, (config or None)


def _config_for(
    cls: type[tfds.core.DatasetBuilder], name: str, config: str | None
) -> str | None:
  configs = [c.name for c in (getattr(cls, "BUILDER_CONFIGS", None) or [])]
  if config is None:
    if len(configs) > 1:
      raise ValueError(
          f"dataset {name!r} needs a config; choose one of: "
          f"{', '.join(f'{name}/{c}' for c in configs)}"
      )
    return configs[0] if configs else None
  if config not in configs:
    valid = ", ".join(f"{name}/{c}" for c in configs) or f"{name} (no configs)"
    raise ValueError(
        f"unknown config {config!r} of dataset {name!r}; " f"valid: {valid}"
    )
  return config


@contextlib.contextmanager
def _file_lock(path: str):
  """Exclusive advisory lock on `path` (POSIX); no-op where unsupported."""
  try:
    import fcntl  # pylint: disable=import-outside-toplevel
  except ImportError:
    yield
    return
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "a+", encoding="utf-8") as handle:
    fcntl.flock(handle, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(handle, fcntl.LOCK_UN)


def _check_builder_kwargs(
    cls: type[tfds.core.DatasetBuilder],
    name: str,
    builder_kwargs: Mapping[str, Any],
) -> None:
  accepted = set()
  for klass in cls.__mro__:
    init = vars(klass).get("__init__")
    if init is not None:
      accepted |= {
          p.name
          for p in inspect.signature(init).parameters.values()
          if p.kind == p.KEYWORD_ONLY
      }
  unknown = sorted(set(builder_kwargs) - accepted)
  if unknown:
    raise ValueError(
        f"dataset {name!r} does not take the builder argument(s) "
        f"{unknown} (config.data.{unknown[0]}); it is read from a "
        "manual download only where a builder lists it"
    )


def get_builder(
    name: str,
    data_dir: str | None = None,
    manual_dir: str | None = None,
    prepare: bool = True,
    builder_kwargs: Mapping[str, Any] | None = None,
) -> tfds.core.DatasetBuilder:
  """The prepared (array_record) builder of "dataset[/config]".

  Args:
    name: e.g. "av_digits/pairs", "ave".
    data_dir: tfds data dir; default `default_data_dir()`.
    manual_dir: directory holding manually downloaded files, for builders
      that need them.
    prepare: run `download_and_prepare` when not yet prepared.
    builder_kwargs: extra keyword arguments of the builder class, e.g.
      {"skip_bad_files": True} (see `config_builder_kwargs`).

  Raises:
    ValueError: unknown dataset or config; a builder argument the builder
      does not take; dataset prepared in another file format.
  """
  dataset, config = split_name(name)
  cls = builder_class(dataset)
  config = _config_for(cls, dataset, config)
  data_dir = os.path.expanduser(data_dir or default_data_dir())
  kwargs: dict[str, Any] = {"data_dir": data_dir, "file_format": FILE_FORMAT}
  if builder_kwargs:
    _check_builder_kwargs(cls, dataset, builder_kwargs)
    kwargs.update(builder_kwargs)
  if config is not None:
    kwargs["config"] = config
  builder = cls(**kwargs)
  if prepare and not builder.is_prepared():
    lock = os.path.join(data_dir, f".{name.replace('/', '_')}.lock")
    with _file_lock(lock):
      builder = cls(**kwargs)  # Another process may have prepared it.
      if not builder.is_prepared():
        builder.download_and_prepare(
            file_format=FILE_FORMAT,
            download_config=tfds.download.DownloadConfig(
                manual_dir=manual_dir, try_download_gcs=False
            ),
        )
        builder = cls(**kwargs)
  if builder.is_prepared() and builder.info.file_format != (
      tfds.core.FileFormat.ARRAY_RECORD
  ):
    raise ValueError(
        f"{name} is prepared in {builder.data_dir} as "
        f"{builder.info.file_format.value}, but avjax reads only "
        f"{FILE_FORMAT}; delete that directory or use another data_dir"
    )
  return builder


def feature_spec(features: tfds.features.FeatureConnector) -> dict[str, Any]:
  """{key: (shape, numpy dtype)} of a tfds FeaturesDict, nested as dicts.

  Unknown dimensions are None.
  """
  shapes, dtypes = features.shape, features.np_dtype

  def build(shape_tree, dtype_tree):
    if isinstance(shape_tree, Mapping):
      return {k: build(shape_tree[k], dtype_tree[k]) for k in shape_tree}
    return (tuple(shape_tree), np.dtype(dtype_tree))

  return build(shapes, dtypes)


def read_feature_spec(builder: tfds.core.DatasetBuilder) -> dict[str, Any]:
  """`feature_spec` of the records `load_source` returns for ``builder``.

  The builder's features, with the shapes its `wrap_data_source` changes
  applied by its `wrapped_feature_spec(spec)` where it has one (AV-digits
  `captions` stores each clip unpadded and reads it zero-padded).
  """
  spec = feature_spec(builder.info.features)
  wrap = getattr(builder, "wrapped_feature_spec", None)
  return wrap(spec) if wrap else spec


def _dtype_matches(expected: np.dtype, actual: np.ndarray) -> bool:
  """Exact dtype for arrays; same kind for scalars (decoded as Python)."""
  if expected.kind in "OSU":
    return actual.dtype.kind in "OSU"
  if actual.ndim == 0:
    integer = "iu"
    return actual.dtype.kind == expected.kind or (
        actual.dtype.kind in integer and expected.kind in integer
    )
  return actual.dtype == expected


def check_example(
    example: Mapping[str, Any],
    spec: Mapping[str, Any],
    source_name: str,
    _prefix: str = "",
) -> None:
  """Checks one record against a `feature_spec`.

  Args:
    example: a record, e.g. `source[0]`.
    spec: {key: (shape, dtype)} (nested dicts allowed); None dims match any
      size.
    source_name: named in the error, e.g. "av_digits/pairs:train".

  Raises:
    ValueError: naming the key, the expected and the actual shape or dtype,
      or the missing keys.
  """
  if not isinstance(example, Mapping):
    raise ValueError(
        f"{source_name}: record{_prefix and ' ' + _prefix} "
        f"is {type(example).__name__}, expected a dict"
    )
  missing = sorted(set(spec) - set(example))
  if missing:
    raise ValueError(
        f"{source_name}: record is missing keys "
        f"{[_prefix + k for k in missing]}"
    )
  for key, expected in spec.items():
    value = example[key]
    if isinstance(expected, Mapping):
      check_example(value, expected, source_name, f"{_prefix}{key}/")
      continue
    shape, dtype = expected
    actual = np.asarray(value)
    if len(actual.shape) != len(shape) or any(
        e is not None and e != a for e, a in zip(shape, actual.shape)
    ):
      raise ValueError(
          f"{source_name}: key {_prefix + key!r} has shape "
          f"{tuple(actual.shape)}, expected {tuple(shape)}"
      )
    if not _dtype_matches(np.dtype(dtype), actual):
      raise ValueError(
          f"{source_name}: key {_prefix + key!r} has dtype "
          f"{actual.dtype}, expected {np.dtype(dtype)}"
      )


def load_source(
    name: str,
    split: str,
    data_dir: str | None = None,
    manual_dir: str | None = None,
    builder_kwargs: Mapping[str, Any] | None = None,
):
  """Random-access source of one split, prepared on first use.

  Args:
    name: "dataset" or "dataset/config", e.g. "av_digits/pairs", "ave".
    split: a split name ("train", "validation", "test", ...), optionally
      with a tfds slice ("train[:100]").
    data_dir: tfds data dir; default $AVJAX_DATA_DIR or ~/avjax_data.
    manual_dir: manually downloaded files, for builders that need them.
    builder_kwargs: extra builder arguments (see `get_builder`).

  Returns:
    A random-access source: `len()` and `[i]` -> dict of numpy arrays
    (scalars as Python numbers, text as bytes), as tfds decodes them
    (`record_decoder.DecodedSource` for records of plain tensors, else
    tfds's array_record data source); wrapped by the
    builder's `wrap_data_source(source, split)` where it has one.

  Raises:
    ValueError: unknown dataset, config or split (listing the valid ones),
      or a record whose shapes do not match the builder's features.
  """
  builder = get_builder(
      name,
      data_dir=data_dir,
      manual_dir=manual_dir,
      builder_kwargs=builder_kwargs,
  )
  splits = list(builder.info.splits.keys())
  base_split = split.split("[", 1)[0]
  if base_split not in splits:
    raise ValueError(
        f"unknown split {split!r} of {name}; valid splits: "
        f"{', '.join(splits)}"
    )
  # Plain-tensor records skip tfds's generic decoding (same records).
  source = record_decoder.decoded_source(builder, split)
  if source is None:
    source = builder.as_data_source(split=split)
  if len(source):
    check_example(
        source[0], feature_spec(builder.info.features), f"{name}:{split}"
    )
  # A builder may keep part of each example outside the tfds records
  # (the caption builders store each image once) and join it back here.
  wrap = getattr(builder, "wrap_data_source", None)
  return wrap(source, split) if wrap else source


# config.data fields passed to the builder when set: False / None leave the
# builder's default (so datasets without the argument accept the config).
_BUILDER_FIELDS = ("skip_bad_files", "image_root")


def config_builder_kwargs(data_cfg: Mapping[str, Any]) -> dict[str, Any]:
  """Builder arguments set in a config's ``data`` block.

  ``data.skip_bad_files`` (when true) and ``data.image_root`` (when set);
  a field left at False / None is not passed.
  """
  return {
      key: data_cfg[key]
      for key in _BUILDER_FIELDS
      if key in data_cfg and data_cfg[key] not in (None, False)
  }


def load_config_source(data_cfg: Mapping[str, Any], split: str):
  """`load_source` of ``split`` with the fields of a config's ``data``
  block: name, data_dir, manual_dir and the builder arguments."""
  return load_source(
      data_cfg["name"],
      split,
      data_dir=data_cfg.data_dir,
      manual_dir=data_cfg.manual_dir,
      builder_kwargs=config_builder_kwargs(data_cfg),
  )
