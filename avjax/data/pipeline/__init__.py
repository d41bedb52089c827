"""From prepared records to model batches: sources, decoding, grain
iterators, feature transforms and the caption tokenizer."""
