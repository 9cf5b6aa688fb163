"""cffi build script (out-of-line API mode) for ``p2pd._quic_native``: QUIC packet
protection (quic_protect.c) on the system's OpenSSL libcrypto.

A module of its own, apart from ``p2pd._native``: it needs libcrypto's headers at build
time, and setup.py builds it only when they are there (p2pd.native_quic then leaves QUIC
packet protection to aioquic's Python). Run directly to build in place.
"""

import os
import re
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
if __name__ == "__main__":
    os.chdir(HERE.parent)
HEADER = HERE / "quic_protect.h"
SOURCE = HERE / "quic_protect.c"


def _cdef() -> str:
    lines = []
    for line in HEADER.read_text().splitlines():
        if re.match(r"#define P2PD_QUIC_\w+ \d+$", line):
            lines.append(line)
        elif not line.startswith("#") and not line.lstrip().startswith(("/*", "*")):
            lines.append(line)
    return "\n".join(lines)


def _rel(path: Path) -> str:
    return str(path.relative_to(Path.cwd())) if Path.cwd() in path.parents else str(path)


def libcrypto_available() -> bool:
    """Whether libcrypto's headers are installed (what setup.py asks before building)."""
    import shutil
    import subprocess

    if shutil.which("pkg-config"):
        done = subprocess.run(["pkg-config", "--exists", "libcrypto"], check=False)
        if done.returncode == 0:
            return True
    return any(Path(d, "openssl", "evp.h").exists() for d in ("/usr/include", "/usr/local/include"))


ffibuilder = FFI()
ffibuilder.cdef(_cdef())
ffibuilder.set_source(
    "p2pd._quic_native",
    '#include "quic_protect.h"',
    sources=[_rel(SOURCE)],
    include_dirs=[str(HERE)],
    libraries=["crypto"],
    extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wextra"]
    + os.environ.get("P2PD_NATIVE_CFLAGS", "").split(),
    extra_link_args=os.environ.get("P2PD_NATIVE_LDFLAGS", "").split(),
)

if __name__ == "__main__":
    ffibuilder.compile(tmpdir=".", verbose=True)
