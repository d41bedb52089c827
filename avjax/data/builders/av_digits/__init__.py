"""AV-digits: the embedded default dataset (tfds name "av_digits").

Importing this package registers the tfds builder `AvDigits`.
"""

from avjax.data.builders.av_digits.builder import AvDigits
from avjax.data.builders.av_digits.builder import AvDigitsConfig
from avjax.data.builders.av_digits.builder import CAPTION_AUDIO_SAMPLES
from avjax.data.builders.av_digits.builder import CAPTION_SPLIT_SIZES
from avjax.data.builders.av_digits.builder import PAIRS_AUDIO_SAMPLES
from avjax.data.builders.av_digits.builder import PAIRS_IMAGE_SIZE
from avjax.data.builders.av_digits.canvas import CANVAS_SIZE
from avjax.data.builders.av_digits.canvas import MAX_DIGITS
from avjax.data.builders.av_digits.digits import DIGIT_WORDS
from avjax.data.builders.av_digits.digits import SPLITS

__all__ = [
    "AvDigits",
    "AvDigitsConfig",
    "CANVAS_SIZE",
    "CAPTION_AUDIO_SAMPLES",
    "CAPTION_SPLIT_SIZES",
    "DIGIT_WORDS",
    "MAX_DIGITS",
    "PAIRS_AUDIO_SAMPLES",
    "PAIRS_IMAGE_SIZE",
    "SPLITS",
]
