"""Text files in: UTF-8 text, lines and JSON, with errors naming file and line."""

from __future__ import annotations

import json
import os
from typing import Any


def _decode_utf8(data: bytes, path: os.PathLike | str) -> str:
  """``data`` as UTF-8 text (a BOM is dropped); ValueError naming the file,
  line and column of the first undecodable byte."""
  try:
    return data.decode("utf-8-sig")
  except UnicodeDecodeError as err:
    line = data.count(b"\n", 0, err.start) + 1
    column = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
    raise ValueError(
        f"{path}:{line}: not UTF-8 text (byte 0x{data[err.start]:02x} at "
        f"column {column}); save the file as UTF-8"
    ) from None


def read_text(path: os.PathLike | str) -> str:
  """A UTF-8 text file's contents (index files, split lists, JSON).

  Raises:
    ValueError: naming the file and line of the first undecodable byte.
  """
  with open(path, "rb") as f:
    return _decode_utf8(f.read(), path)


def read_lines(path: os.PathLike | str) -> list[str]:
  """The lines of a UTF-8 text file, without line ends (see ``read_text``)."""
  return read_text(path).splitlines()


def read_json(path: os.PathLike | str) -> Any:
  """A UTF-8 JSON file, parsed.

  Raises:
    ValueError: naming the file, and the line and column where decoding or
      parsing failed (e.g. a truncated download).
  """
  text = read_text(path)
  try:
    return json.loads(text)
  except json.JSONDecodeError as err:
    hint = " (truncated?)" if err.pos >= len(text.rstrip()) else ""
    raise ValueError(
        f"{path}:{err.lineno}:{err.colno}: not valid JSON"
        f"{hint} ({err.msg} at line {err.lineno} column "
        f"{err.colno})"
    ) from None
