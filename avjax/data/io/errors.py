"""The errors raised for a bad input file, naming the file and the reason."""

from __future__ import annotations

import os
from pathlib import Path


class FileError(ValueError):
  """A file is missing, corrupt, truncated or lacks needed content.

  Attributes:
    path: the file at fault.
    reason: short description.
  """

  def __init__(self, path: os.PathLike | str, reason: str):
    self.path = os.fspath(path)
    self.reason = reason
    super().__init__(f"{reason}: {self.path}")


class BadFileError(FileError):
  """One dataset item's file is missing, empty or cannot be decoded.

  Raised by the readers of ``avjax.data.io`` and the builders; ``path`` is
  a ``pathlib.Path`` here.
  """

  def __init__(self, path: os.PathLike | str, reason: str):
    super().__init__(path, reason)
    self.path = Path(path)
