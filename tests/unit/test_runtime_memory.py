"""p2pd.runtime.trim_memory: freed heap memory goes back to the kernel.

In a fresh interpreter (its own allocator state): one large buffer freed raises glibc's
mmap threshold, as the daemon's first block transfer does; after that 64 MiB of 256 KiB
buffers come from the heap, and every other one freed (32 MiB between live ones) stays
resident until the trim."""

import subprocess
import sys

import pytest

SCRIPT = r"""
from p2pd.runtime import rss_bytes, trim_memory
del_me = bytearray(1 << 20); del del_me          # the threshold rises past 1 MiB
bufs = [bytearray(b"x" * (256 << 10)) for _ in range(256)]  # 64 MiB on the heap
del bufs[::2]
before = rss_bytes()
trimmed = trim_memory()
print(before, rss_bytes(), trimmed)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc_trim")
def test_trim_memory_gives_freed_heap_memory_back_to_the_kernel():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                         check=True, timeout=60).stdout.split()
    before, after, trimmed = int(out[0]), int(out[1]), out[2]
    assert trimmed == "True"
    assert before - after > 24 << 20, (before >> 20, after >> 20)
