"""Build glue: compiles the native core (p2pd._native) with cffi.

The C sources and the cffi build script live in native/. If the C compiler is
missing the build fails loudly; set P2PD_NO_NATIVE=1 to install the pure-Python
package (p2pd.native then falls back to hashlib/PyNaCl).

The build script is named relative to this file, not to the working directory:
build frontends do not all run setup.py from the project root.
"""

import os
import sys

from setuptools import setup

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD_SCRIPT = os.path.join("native", "build_native.py")
QUIC_SCRIPT = os.path.join("native", "build_quic.py")

cffi_modules = []
if os.environ.get("P2PD_NO_NATIVE") != "1":
    os.chdir(HERE)
    if os.path.exists(os.path.join(HERE, BUILD_SCRIPT)):
        cffi_modules.append(BUILD_SCRIPT + ":ffibuilder")
        # QUIC packet protection links the system libcrypto: only when its headers are here
        sys.path.insert(0, os.path.join(HERE, "native"))
        from build_quic import libcrypto_available

        sys.path.pop(0)
        if libcrypto_available():
            cffi_modules.append(QUIC_SCRIPT + ":ffibuilder")
        else:
            print("p2pd: no OpenSSL headers (libssl-dev); QUIC packet protection stays in "
                  "Python", file=sys.stderr)
    else:
        print(f"p2pd: {BUILD_SCRIPT} not found under {HERE}; "
              "installing without the native core", file=sys.stderr)

setup(cffi_modules=cffi_modules)
