"""Build glue: compiles the native core (p2pd._native) with cffi.

The C sources and the cffi build script live in native/. If the C compiler is
missing the build fails loudly; set P2PD_NO_NATIVE=1 to install the pure-Python
package (p2pd.native then falls back to hashlib/PyNaCl).
"""

import os

from setuptools import setup

cffi_modules = []
if os.environ.get("P2PD_NO_NATIVE") != "1":
    cffi_modules.append("native/build_native.py:ffibuilder")

setup(cffi_modules=cffi_modules)
