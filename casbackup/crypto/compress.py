"""zstd compression of one blob, with a one-byte tag saying how the body is stored.

Invariants:
- Output is ``tag ‖ body`` where tag ``0`` = raw, ``1`` = zstd frame. ``decompress`` of
  ``compress(x)`` is ``x`` for every input.
- Compression is skipped (raw) when it does not pay: when a zstd probe of eight 8 KiB
  samples spread evenly over the blob saves less than 3 %, or when the full result is not
  smaller than the input. The probe keeps already-compressed data (media, archives,
  random) from costing the pipeline two thirds of its time for nothing; sampling the
  whole blob (not just its head) keeps a chunk that starts with random bytes and ends in
  a zero run from being stored raw.
- Compressor objects are not thread-safe, so each thread gets its own (thread-local).
- ``decompress`` never allocates more than it was told to expect: with ``raw_length``
  (the index's length) or ``limit`` (an upper bound the caller derives), a frame whose
  header declares more, or that produces more, is an ``IntegrityError`` before or instead
  of the allocation (zstandard itself sizes its output by the frame header and ignores
  ``max_output_size`` when the header has a size: a 2 KiB hostile frame could claim
  gigabytes).
"""

from __future__ import annotations

import threading

import zstandard

from ..errors import IntegrityError

RAW = 0
ZSTD = 1
_PROBE = 64 * 1024
_MIN_SAVING = 0.03
_SAMPLES = 8
_SAMPLE = 8 * 1024
_RAW_TAG = bytes((RAW,))
_ZSTD_TAG = bytes((ZSTD,))


class Compressor:
    def __init__(self, level: int = 3) -> None:
        self.level = level
        self._local = threading.local()

    def _cctx(self) -> zstandard.ZstdCompressor:
        c = getattr(self._local, "c", None)
        if c is None:
            c = self._local.c = zstandard.ZstdCompressor(level=self.level)
        return c

    def _dctx(self) -> zstandard.ZstdDecompressor:
        d = getattr(self._local, "d", None)
        if d is None:
            d = self._local.d = zstandard.ZstdDecompressor()
        return d

    def compress(self, data: bytes | memoryview) -> bytes:
        tag, body = self.compress_parts(data)
        return tag + body

    def compress_parts(self, data: bytes | memoryview) -> tuple[bytes, bytes | memoryview]:
        """``compress`` as (tag, body), unjoined: a raw body is DATA itself, not a copy."""
        n = len(data)
        if n < 64:
            return _RAW_TAG, data
        if n > 2 * _PROBE:
            mv = memoryview(data)
            step = n // _SAMPLES
            sample = b"".join(mv[i * step : i * step + _SAMPLE] for i in range(_SAMPLES))
            if len(self._cctx().compress(sample)) > len(sample) * (1 - _MIN_SAVING):
                return _RAW_TAG, data
        out = self._cctx().compress(data)
        if len(out) >= n:
            return _RAW_TAG, data
        return _ZSTD_TAG, out

    def decompress(self, data: bytes | memoryview, raw_length: int | None = None,
                   limit: int | None = None) -> bytes:
        out = self.decompress_view(data, raw_length, limit)
        return out if isinstance(out, bytes) else bytes(out)

    def decompress_view(self, data: bytes | memoryview, raw_length: int | None = None,
                        limit: int | None = None) -> bytes | memoryview:
        """``decompress``, but a raw body comes back as a view of DATA, not a copy.
        RAW_LENGTH: the exact plaintext length expected; LIMIT: at most this many bytes
        (either bounds the allocation; see the module's invariants)."""
        if not data:
            raise IntegrityError("empty blob body")
        tag = data[0]
        body = memoryview(data)[1:]
        if tag == RAW:
            return body
        if tag == ZSTD:
            cap = raw_length if raw_length is not None else limit
            try:
                if cap is None:
                    return self._dctx().decompress(body)
                declared = zstandard.frame_content_size(body)
                if declared > cap:
                    raise IntegrityError(f"zstd frame declares {declared} bytes, more than "
                                         f"the {cap} expected")
                return self._dctx().decompress(body, max_output_size=cap)
            except zstandard.ZstdError as e:
                raise IntegrityError(f"zstd frame is damaged: {e}") from e
            except MemoryError:
                raise IntegrityError(f"zstd frame claims {cap} bytes, more than can be "
                                     "allocated here") from None
        raise IntegrityError(f"unknown compression tag {tag}")
