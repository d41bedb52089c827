"""tfds builders: the embedded AV-digits and the papers' real datasets.

Each module defines one builder (or two sharing a layout) registered by name
in `avjax.data.pipeline.sources`; `manual` holds what the manual-download
builders share (finding the expected files, counting bad ones).
"""
