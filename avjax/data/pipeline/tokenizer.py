"""Caption tokenizer: a word-level vocabulary trained on training captions.

Built with Hugging Face ``tokenizers`` (a ``WordLevel`` model): text is
lower-cased and NFKC-normalised, split on whitespace and punctuation, and
each word maps to its id; a word not in the vocabulary (unseen in training,
or cut by ``vocab_size`` / ``min_frequency``) maps to ``[UNK]``. The
vocabulary is trained on the training split's captions only, at dataset
generation, and saved with the dataset as JSON (``to_json`` /
``from_json``; the tfds builders keep it in ``info.metadata["tokenizer"]``).

Special tokens: ``[PAD]`` = 0 (padding, masked out), ``[UNK]`` = 1.
Encoding returns fixed-length id arrays and a validity mask, truncating
captions longer than ``max_length`` tokens.

A word-level vocabulary suits the small generated AV-digits grammar; on
MSR-VTT (≈ 29k distinct words) it is cut to the most frequent words.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

PAD, UNK = "[PAD]", "[UNK]"
PAD_ID, UNK_ID = 0, 1


class CaptionTokenizer:
  """Word-level tokenizer with an unknown-token fallback (see module doc)."""

  def __init__(self, tokenizer):
    """Wraps a ``tokenizers.Tokenizer``; use ``train`` or ``from_json``."""
    self._tok = tokenizer
    if (
        self._tok.token_to_id(PAD) != PAD_ID
        or self._tok.token_to_id(UNK) != UNK_ID
    ):
      raise ValueError(
          f"tokenizer must map {PAD} to {PAD_ID} and {UNK} to " f"{UNK_ID}"
      )

  @classmethod
  def train(
      cls, texts: Sequence[str], vocab_size: int = 10000, min_frequency: int = 1
  ) -> "CaptionTokenizer":
    """Trains the vocabulary on ``texts`` (the training captions).

    Raises:
      ValueError: no texts, or no word in them.
    """
    import tokenizers  # pylint: disable=import-outside-toplevel
    from tokenizers import models, normalizers, pre_tokenizers, trainers

    texts = list(texts)
    if not texts:
      raise ValueError("cannot train a caption tokenizer on zero captions")
    tok = tokenizers.Tokenizer(models.WordLevel(unk_token=UNK))
    tok.normalizer = normalizers.Sequence(
        [normalizers.NFKC(), normalizers.Lowercase()]
    )
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(
        vocab_size=int(vocab_size),
        min_frequency=int(min_frequency),
        special_tokens=[PAD, UNK],
    )
    tok.train_from_iterator(texts, trainer=trainer)
    if tok.get_vocab_size() <= 2:
      raise ValueError("the training captions contain no words")
    return cls(tok)

  @classmethod
  def from_json(cls, text: str) -> "CaptionTokenizer":
    import tokenizers  # pylint: disable=import-outside-toplevel

    return cls(tokenizers.Tokenizer.from_str(text))

  def to_json(self) -> str:
    return self._tok.to_str()

  @property
  def vocab_size(self) -> int:
    return self._tok.get_vocab_size()

  @property
  def max_id(self) -> int:
    """The largest token id the vocabulary maps a word to."""
    return max(self._tok.get_vocab().values())

  def tokens(self, text: str) -> list[str]:
    """The normalised words of ``text`` (before the vocabulary lookup)."""
    return [
        w
        for w, _ in self._tok.pre_tokenizer.pre_tokenize_str(
            self._tok.normalizer.normalize_str(text)
        )
    ]

  def encode(
      self,
      texts: Sequence[str] | np.ndarray,
      max_length: int,
      where: str = "caption",
  ) -> tuple[np.ndarray, np.ndarray]:
    """Token ids and mask of a batch of captions.

    Args:
      texts: B captions (str or UTF-8 bytes, e.g. straight from tfds).
      max_length: L, tokens kept per caption (longer ones are truncated).
      where: names the captions in error messages (dataset, split).

    Returns:
      (ids int32 [B, L], mask bool [B, L]); padding has id 0, mask False.

    Raises:
      ValueError: a caption that is empty or has no word, naming it by
        position in the batch.
    """
    if max_length < 1:
      raise ValueError(f"max_length must be >= 1, got {max_length}")
    texts = [
        t.decode("utf-8") if isinstance(t, bytes) else str(t) for t in texts
    ]
    for i, text in enumerate(texts):
      if not text.strip():
        raise ValueError(
            f"{where} {i} of the batch is empty: every video "
            "needs a caption with at least one word"
        )
    encodings = self._tok.encode_batch(texts, add_special_tokens=False)
    ids = np.zeros((len(texts), max_length), np.int32)
    for i, enc in enumerate(encodings):
      if not enc.ids:
        raise ValueError(
            f"{where} {i} of the batch ({texts[i]!r}) has no " "word"
        )
      row = enc.ids[:max_length]
      ids[i, : len(row)] = row
    return ids, ids != PAD_ID
