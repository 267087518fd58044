"""Pack sinks: the streamed pack is byte-identical to the in-memory one and published
with the same exclusive, durable semantics; an aborted one leaves nothing visible."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from casbackup.backends.local import LocalBackend
from casbackup.crypto.codec import DATA, Codec
from casbackup.errors import AlreadyExists
from casbackup.ids import object_name
from casbackup.store.pack import PackEntry, pack_key, parse_header
from casbackup.store.packsink import MemorySink, StreamSink


def _fill(sink: MemorySink | StreamSink, codec: Codec, blobs: list[bytes]) -> list[PackEntry]:
    entries = []
    for b in blobs:
        sealed = codec.seal(DATA, b)
        entries.append(PackEntry(DATA, codec.blob_id(b), sink.size, len(sealed), len(b)))
        sink.write(sealed)
    return entries


def test_stream_sink_equals_memory_sink(tmp_path: Path) -> None:
    codec = Codec(os.urandom(32), None, "aes-256-gcm")  # unencrypted: sealing is deterministic
    blobs = [os.urandom(5000), b"x" * 100_000, b""]
    stored: dict[str, bytes] = {}
    mem = MemorySink(lambda n, d: stored.__setitem__(n, bytes(d)))
    name1, size1 = mem.publish(codec, _fill(mem, codec, blobs))
    backend = LocalBackend(str(tmp_path))
    st = StreamSink(backend.temp_writer("packs"))
    entries = _fill(st, codec, blobs)
    name2, size2 = st.publish(codec, entries)
    data = backend.get(pack_key(name2))
    assert (name1, size1) == (name2, size2)
    assert data == stored[name1] and object_name(data) == name2
    assert parse_header(codec, data, name2) == entries
    assert not [p for p in tmp_path.rglob(".tmp-*")]


def test_stream_sink_abort_and_existing_name(tmp_path: Path) -> None:
    codec = Codec(os.urandom(32), None, "aes-256-gcm")
    backend = LocalBackend(str(tmp_path))
    st = StreamSink(backend.temp_writer("packs"))
    _fill(st, codec, [b"abc" * 1000])
    st.discard()
    assert not list(tmp_path.rglob(".tmp-*")) and list(backend.list("packs/")) == []
    # publishing a pack whose name exists is success (same name, same bytes)
    a, b = StreamSink(backend.temp_writer("packs")), StreamSink(backend.temp_writer("packs"))
    na, _ = a.publish(codec, _fill(a, codec, [b"same"]))
    nb, _ = b.publish(codec, _fill(b, codec, [b"same"]))
    assert na == nb and len(list(backend.list("packs/"))) == 1
    w = backend.temp_writer("packs")
    w.write(b"other")
    with pytest.raises(AlreadyExists):
        w.commit(pack_key(na))
    assert not list(tmp_path.rglob(".tmp-*"))
