"""avjax data: tfds builders, random-access sources, grain pipelines, features.

Modules (imported on demand, so `import avjax.data` stays cheap):
  sources   `load_source(name, split, data_dir, manual_dir)` for every dataset
  pipeline  grain training iterator (checkpointable) and whole-split loading
  features  log-mel spectrograms, frame masks, image transforms, batch maps
  speech    deterministic in-process espeak-ng synthesis (16 kHz int16)
  av_digits the embedded default dataset (tfds builder "av_digits")
"""
