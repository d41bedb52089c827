"""The error raised for a bad input file, naming the file and the reason."""

from __future__ import annotations

import os


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
