"""Image files in: any image PIL opens → RGB uint8, resized and centre-cropped.

Images are resized so the SHORTER side equals ``size`` (bicubic) and then
centre-cropped to ``size × size``: the aspect ratio is kept, as CLIP-style
and ResNet-style encoders expect. JPEGs are first decoded at the smallest
DCT-reduced scale (1/2, 1/4, 1/8) that still covers ``size × size``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from avjax.data.io.errors import BadFileError


def load_image(path: os.PathLike | str, size: int) -> np.ndarray:
  """Decodes an image as RGB uint8 [size, size, 3].

  The shorter side is resized to ``size`` (bicubic), then the center
  ``size × size`` square is kept.

  Raises:
    BadFileError: missing or undecodable image.
  """
  path = Path(path)
  if not path.is_file():
    raise BadFileError(path, "missing image file")
  try:
    with Image.open(path) as img:
      # JPEG: decode directly at a reduced scale that still covers
      # size × size (much faster for large photos; a no-op otherwise).
      img.draft("RGB", (size, size))
      img = img.convert("RGB")
  except (UnidentifiedImageError, OSError, ValueError) as err:
    raise BadFileError(path, f"unreadable image file ({err})") from err
  w, h = img.size
  scale = size / min(w, h)
  new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
  img = img.resize((new_w, new_h), Image.Resampling.BICUBIC)
  left, top = (new_w - size) // 2, (new_h - size) // 2
  img = img.crop((left, top, left + size, top + size))
  return np.asarray(img, dtype=np.uint8)
