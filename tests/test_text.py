"""CaptionTokenizer: word ids, unknown-word fallback, padding, errors."""

import json
import re

import numpy as np
import pytest

from avjax.data.pipeline import tokenizer

_CAPTIONS = [
    "a 3 moves left slowly, then a 7 appears at the top",
    "The digit 5 slides DOWN quickly",
    "a 3 moves up",
]


def _vocab(tok):
  return json.loads(tok.to_json())["model"]["vocab"]


def _reference_ids(vocab, caption):
  words = re.findall(r"\w+|[^\w\s]+", caption.lower())
  return [vocab.get(w, tokenizer.UNK_ID) for w in words]


def test_known_and_unseen_words():
  tok = tokenizer.CaptionTokenizer.train(_CAPTIONS)
  vocab = _vocab(tok)
  assert vocab[tokenizer.PAD] == 0 and vocab[tokenizer.UNK] == 1
  assert {"digit", "slides", "down", ",", "3"} <= set(vocab)
  queries = ["A 3 moves LEFT, then a 7", "a purple 9 zooms left"]
  ids, mask = tok.encode(queries, max_length=8)
  assert ids.dtype == np.int32 and ids.shape == (2, 8) and mask.dtype == bool
  for row, q in enumerate(queries):
    want = _reference_ids(vocab, q)[:8]
    np.testing.assert_array_equal(ids[row, : len(want)], want)
    np.testing.assert_array_equal(ids[row, len(want) :], 0)
    np.testing.assert_array_equal(mask[row], np.arange(8) < len(want))
  # "purple", "9" and "zooms" were never seen: the unknown token.
  np.testing.assert_array_equal(
      ids[1, :5], [vocab["a"], 1, 1, 1, vocab["left"]]
  )


def test_truncation_bytes_and_json_round_trip():
  tok = tokenizer.CaptionTokenizer.train(_CAPTIONS)
  again = tokenizer.CaptionTokenizer.from_json(tok.to_json())
  assert again.vocab_size == tok.vocab_size
  long = _CAPTIONS[0].encode("utf-8")
  ids, mask = again.encode([long], max_length=4)
  np.testing.assert_array_equal(
      ids[0], _reference_ids(_vocab(tok), _CAPTIONS[0])[:4]
  )
  assert mask.all()


def test_vocab_size_cut_maps_rare_words_to_unknown():
  tok = tokenizer.CaptionTokenizer.train(["a a a b b c"], vocab_size=4)
  ids, _ = tok.encode(["a b c"], max_length=3)
  np.testing.assert_array_equal(
      ids[0], [_vocab(tok)["a"], _vocab(tok)["b"], tokenizer.UNK_ID]
  )


def test_empty_captions_are_named():
  tok = tokenizer.CaptionTokenizer.train(_CAPTIONS)
  with pytest.raises(
      ValueError, match="av_digits:train caption 1 of the " "batch is empty"
  ):
    tok.encode(["a 3", "   "], max_length=4, where="av_digits:train caption")
  with pytest.raises(ValueError, match="zero captions"):
    tokenizer.CaptionTokenizer.train([])
  with pytest.raises(ValueError, match="no words"):
    tokenizer.CaptionTokenizer.train(["", "  "])
