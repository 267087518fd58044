"""Keyed hashing, compression, AEAD and key wrapping; ``codec`` is the one place they combine."""
