"""A saver thread that hands in a full pack after the packer was closed (the run ended
on a failed upload while other threads were still cutting files) gets the run's own
failure, or a CasError, never the thread pool's RuntimeError (it ended backups with
an "internal error" under load: test_remote_faults, 1 in ~8 runs)."""

from __future__ import annotations

import pytest

from casbackup.errors import CasError, PermanentError
from casbackup.store.index import Index
from casbackup.store.packer import Packer


class _Codec:
    def seal(self, kind: str, data: bytes) -> bytes:
        return data


def _packer(fail: bool) -> Packer:
    def put_pack(name: str, data: bytes | memoryview) -> None:
        if fail:
            raise PermanentError("put refused", name)

    return Packer(_Codec(), Index(), put_pack=put_pack,  # type: ignore[arg-type]
                  put_index=lambda packs: None,
                  pack_size=10, uploaders=1, index_every=8)


@pytest.mark.parametrize("failed_first", [True, False])
def test_a_full_pack_after_close_raises_a_cas_error(failed_first: bool) -> None:
    p = _packer(fail=failed_first)
    if failed_first:
        assert p.reserve(b"a" * 32)
        p.add("data", b"a" * 32, b"x" * 20, 20)  # full: submitted, and the upload fails
        with pytest.raises(CasError):
            p.flush()
    p.close()
    with pytest.raises(CasError) as info:
        p.add("data", b"b" * 32, b"y" * 20, 20)  # a full pack handed in after close
    if failed_first:
        assert "put refused" in str(info.value)
