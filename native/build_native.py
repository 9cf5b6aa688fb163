"""cffi build script (out-of-line API mode) for ``p2pd._native``.

setup.py names ``native/build_native.py:ffibuilder`` in ``cffi_modules``, so
``pip install .`` and ``pip install -e .`` compile the C sources below with the
machine's C compiler. cffi releases the GIL around every call into the module.

Run directly (``python native/build_native.py``) to build in place, e.g. with
``P2PD_NATIVE_CFLAGS="-fsanitize=address,undefined"`` for a sanitizer build.
"""

import os
import re
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
if __name__ == "__main__":
    os.chdir(HERE.parent)  # so objects land under build paths relative to the project
SOURCES = ["sha256.c", "sha512.c", "ed25519.c"]
HEADER = HERE / "p2pd_native.h"


def _cdef() -> str:
    """The header's declarations without preprocessor lines (cffi's cdef takes plain C)."""
    text = HEADER.read_text()
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    lines = []
    for line in text.splitlines():
        m = re.match(r"#define\s+(P2PD_\w+)\s+(-?\d+)\s*$", line)
        if m:
            lines.append(f"#define {m.group(1)} {m.group(2)}")
        elif not line.startswith("#"):
            lines.append(line)
    return "\n".join(lines)


ffibuilder = FFI()
ffibuilder.cdef(_cdef())
ffibuilder.set_source(
    "p2pd._native",
    '#include "p2pd_native.h"',
    sources=[str((HERE / s).relative_to(Path.cwd())) if Path.cwd() in (HERE / s).parents
             else str(HERE / s) for s in SOURCES],
    include_dirs=[str(HERE)],
    extra_compile_args=["-O3", "-std=c11", "-Wall", "-Wextra"]
    + os.environ.get("P2PD_NATIVE_CFLAGS", "").split(),
    extra_link_args=os.environ.get("P2PD_NATIVE_LDFLAGS", "").split(),
)

if __name__ == "__main__":
    ffibuilder.compile(tmpdir=".", verbose=True)
