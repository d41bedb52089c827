"""avjax.models.encoders: frame_patches against a loop over patch positions."""

import numpy as np
import pytest

from avjax.models import encoders


@pytest.mark.parametrize("patch", [1, 2, 4])
def test_frame_patches_holds_each_patch_row_major_then_channel(patch):
  rng = np.random.default_rng(0)
  frames = rng.normal(size=(3, 8, 12, 2)).astype(np.float32)
  got = np.asarray(encoders.frame_patches(frames, patch, "patch"))
  assert got.shape == (3, 8 // patch, 12 // patch, patch * patch * 2)
  for n in range(3):
    for i in range(8 // patch):
      for j in range(12 // patch):
        block = frames[
            n, i * patch : (i + 1) * patch, j * patch : (j + 1) * patch
        ]
        np.testing.assert_array_equal(got[n, i, j], block.reshape(-1))


def test_frame_patches_names_the_setting_and_size():
  frames = np.zeros((1, 10, 8, 1), np.float32)
  with pytest.raises(
      ValueError,
      match="frames of 10x8 are not divisible by config.model.visual.patch=4",
  ):
    encoders.frame_patches(frames, 4, "config.model.visual.patch")
