"""The ML backend: Label Studio's ML-backend protocol over loop's shared model code."""
