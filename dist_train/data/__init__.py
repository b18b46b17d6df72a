"""Samples, shards, manifests and the sources they are packed from."""
