import ctypes
import ctypes.util
import platform

import numpy as np
import pytest

from stream_app.process_tuning import reuse_freed_memory


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_freed_score_arrays_are_reused_not_mapped_afresh():
    assert reuse_freed_memory()
    # glibc's mallinfo2 (2.33+) reports mapped blocks: a 5.6 MB array must not be one now.
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    if not hasattr(libc, "mallinfo2"):
        pytest.skip("glibc without mallinfo2")

    class MallInfo2(ctypes.Structure):
        _fields_ = [
            (name, ctypes.c_size_t)
            for name in (
                "arena",
                "ordblks",
                "smblks",
                "hblks",
                "hblkhd",
                "usmblks",
                "fsmblks",
                "uordblks",
                "fordblks",
                "keepcost",
            )
        ]

    libc.mallinfo2.restype = MallInfo2
    before = libc.mallinfo2().hblkhd
    scores = np.zeros((70, 20_000), dtype=np.float32)
    assert libc.mallinfo2().hblkhd - before < scores.nbytes
