"""Videos on disk to frames a model can see: manifests, decoding, the frame cache, the data check."""
