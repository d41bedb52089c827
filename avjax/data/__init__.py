"""avjax data, in three rooms (each imported on demand, so `import avjax.data`
stays cheap):

  builders/  tfds dataset builders: `av_digits` (the embedded default, a
             subpackage with its espeak-ng `speech` synthesiser), the real
             datasets read from a manual download (`avcmr_features` for AVE
             and VEGAS, `flickr8k_audio`, `spokencoco`, `sync_videos` for
             VGGSound-Sparse and LRS3, `msrvtt`) and what they share
             (`manual`, `spoken_captions`).
  pipeline/  from prepared records to batches: `sources` (random-access
             sources by dataset name), `record_decoder`, `iterators` (grain
             training iterators and whole-split loading), `sync`
             (Synchformer's crops and offsets), `features` (log-mel, image
             transforms), `tokenizer` (captions), `subsets`.
  io/        files in and out: `audio`, `image`, `video`, `text`,
             `labels_file`, and the `errors` naming a bad file.
"""
