"""Decoding tfds records of plain tensors straight to numpy.

tfds decodes an `array_record` record (a serialised ``tf.train.Example``)
generically: it flattens the feature tree, parses every proto field through
a chain of per-feature wrappers, then nests the result again. For records
whose features are all plain tensors (``tfds.features.Tensor``, ``Scalar``,
``ClassLabel``, ``Text`` with a static or single unknown dimension) that
machinery costs more than reading the record: about 0.6 ms of a 1.1 ms
AV-digits `sync` record on this project's 2-core machine, which made it the
largest part of the Synchformer input pipeline. `RecordDecoder` does the same
decoding with one pass over a precomputed plan and returns what tfds returns
(same keys, dtypes, shapes, values, read-only arrays for byte-encoded
tensors, Python scalars for 0-d features; ``tests/test_record_decoder.py``
compares them record by record). `decoded_source` wraps a split's raw
records with it, or returns None when a feature is anything else (images,
sequences, optional or dynamically shaped tensors), so that tfds decodes.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
from tensorflow_datasets.proto import tf_example_pb2

_Encoding = tfds.features.Encoding
_PLAIN = (
    tfds.features.Tensor,
    tfds.features.Scalar,
    tfds.features.ClassLabel,
    tfds.features.Text,
)


@dataclasses.dataclass(frozen=True)
class _Field:
  """How one serialised feature becomes its numpy value."""

  path: tuple[str, ...]  # Keys from the top of the record.
  key: str  # The tf.Example feature name ("a/b" for nested dicts).
  dtype: np.dtype
  shape: tuple[int, ...]  # Static shape, -1 for the one unknown dim.
  encoding: _Encoding


def _decodes_as_tensor(feature: tfds.features.FeatureConnector) -> bool:
  """Whether tfds's numpy decoding of ``feature`` is `Tensor`'s."""
  if isinstance(feature, tfds.features.Text):
    # Text returns the parsed value as is: Tensor's for a plain string.
    return feature.encoder is None and not feature.shape
  return (
      type(feature).decode_example_np is tfds.features.Tensor.decode_example_np
  )


def _plain_fields(
    features: tfds.features.FeatureConnector, path: tuple[str, ...]
) -> list[_Field] | None:
  """The fields of ``features``, or None if one is not a plain tensor."""
  if isinstance(features, tfds.features.FeaturesDict):
    fields: list[_Field] = []
    for name, child in features.items():
      child_fields = _plain_fields(child, path + (name,))
      if child_fields is None:
        return None
      fields += child_fields
    return fields
  if type(features) not in _PLAIN:  # Subclasses may decode differently.
    return None
  info = features.get_tensor_info()
  serialized = features.get_serialized_info()
  if (
      not isinstance(serialized, tfds.features.TensorInfo)  # Dynamic shape.
      or info.optional
      or np.dtype(info.np_dtype) == np.uint64  # Stored bit-cast as int64.
      or not _decodes_as_tensor(features)
  ):
    return None
  encoding = features._encoding  # pylint: disable=protected-access
  if encoding == _Encoding.NONE and (
      np.dtype(serialized.np_dtype) != np.dtype(info.np_dtype)
      or tuple(serialized.shape) != tuple(info.shape)
  ):
    return None
  # At most one unknown dimension: more make a dynamic shape (above).
  shape = tuple(-1 if d is None else int(d) for d in info.shape)
  return [
      _Field(path, "/".join(path), np.dtype(info.np_dtype), shape, encoding)
  ]


class RecordDecoder:
  """Serialised ``tf.train.Example`` bytes -> the record tfds would decode.

  Build it with `RecordDecoder.for_features`, which returns None for
  features it does not handle.
  """

  def __init__(self, fields: Sequence[_Field]):
    self._fields = tuple(fields)

  @classmethod
  def for_features(
      cls, features: tfds.features.FeatureConnector
  ) -> RecordDecoder | None:
    fields = _plain_fields(features, ())
    return None if fields is None else cls(fields)

  def __call__(self, record: bytes) -> dict[str, Any]:
    stored = tf_example_pb2.Example.FromString(record).features.feature
    out: dict[str, Any] = {}
    for field in self._fields:
      if field.key not in stored:
        raise ValueError(
            f"record has no feature {field.key!r}; it holds "
            f"{sorted(stored)}"
        )
      value = _decode(stored[field.key], field)
      target = out
      for name in field.path[:-1]:
        target = target.setdefault(name, {})
      target[field.path[-1]] = value
    return out


def _decode(feature: Any, field: _Field) -> Any:
  if field.encoding != _Encoding.NONE:
    data = feature.bytes_list.value[0]
    if field.encoding == _Encoding.ZLIB:
      data = zlib.decompress(data)
    return np.frombuffer(data, dtype=field.dtype).reshape(field.shape)
  kind = feature.WhichOneof("kind")
  if kind is None:
    raise ValueError(f"feature {field.key!r} holds no values")
  values = getattr(feature, kind).value
  if not field.shape:  # A Python scalar, as tfds's `.item()` gives.
    if len(values) != 1:
      raise ValueError(
          f"feature {field.key!r} holds {len(values)} values, expected one"
      )
    if field.dtype == np.object_:
      return values[0]
    return field.dtype.type(values[0]).item()
  return np.array(values, dtype=field.dtype).reshape(field.shape)


@dataclasses.dataclass(frozen=True)
class DecodedSource:
  """A split's raw records, decoded by a `RecordDecoder` on access.

  ``len(source)``, ``source[i]`` and ``source.__getitems__(indices)`` as in
  a tfds data source.
  """

  records: Any  # Random access to serialised examples (array_record).
  decoder: RecordDecoder
  name: str = ""

  def __len__(self) -> int:
    return len(self.records)

  def __getitem__(self, index: Any) -> dict[str, Any]:
    return self.decoder(self.records[index.__index__()])

  def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
    return [self.decoder(r) for r in self.records.__getitems__(indices)]

  def __repr__(self) -> str:
    return f"DecodedSource({self.name}, {len(self)} records)"


def decoded_source(
    builder: tfds.core.DatasetBuilder, split: str
) -> DecodedSource | None:
  """``split`` of a prepared builder decoded by `RecordDecoder`, or None
  when its features are not all plain tensors (then use tfds's source)."""
  decoder = RecordDecoder.for_features(builder.info.features)
  if decoder is None:
    return None
  records = builder.as_data_source(
      split=split,
      deserialize_method=tfds.decode.DeserializeMethod.RAW_BYTES,
  )
  return DecodedSource(records, decoder, f"{builder.name}:{split}")
