"""The C SHA-256 source compiled on its own: with SHA-NI and as a non-x86 build would be.

A small C driver hashes every length 0..300 and a chunked buffer; both builds must
print what hashlib computes. This proves the portable-only build (-DP2PD_NO_SHANI,
what a machine without x86 SHA extensions compiles) is correct, not just the paths
the installed extension happens to select.
"""

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

NATIVE = Path(__file__).resolve().parents[2] / "native"
CC = shutil.which("cc") or shutil.which("gcc")

DRIVER = r"""
#include <stdio.h>
#include <stdint.h>
#include "p2pd_native.h"
int main(void) {
    static uint8_t data[4096], out[32 * 64];
    for (int i = 0; i < 4096; i++) data[i] = (uint8_t)(i * 131 + 7);
    for (int len = 0; len <= 300; len++) {
        p2pd_sha256(P2PD_SHA256_AUTO, data, (size_t)len, out);
        for (int j = 0; j < 32; j++) printf("%02x", out[j]);
        printf("\n");
    }
    p2pd_sha256_chunks(P2PD_SHA256_AUTO, data, 4000, 100, out);
    for (int c = 0; c < 40; c++) {
        for (int j = 0; j < 32; j++) printf("%02x", out[32 * c + j]);
        printf("\n");
    }
    return 0;
}
"""


def expected() -> list[str]:
    data = bytes((i * 131 + 7) & 0xFF for i in range(4096))
    lines = [hashlib.sha256(data[:n]).hexdigest() for n in range(301)]
    lines += [hashlib.sha256(data[i : i + 100]).hexdigest() for i in range(0, 4000, 100)]
    return lines


@pytest.mark.skipif(CC is None, reason="no C compiler on this machine")
@pytest.mark.parametrize("defines", [[], ["-DP2PD_NO_SHANI"]], ids=["default", "portable-only"])
def test_c_source_builds_and_hashes_correctly(tmp_path, defines):
    driver = tmp_path / "driver.c"
    driver.write_text(DRIVER)
    exe = tmp_path / "driver"
    subprocess.run(
        [CC, "-O2", "-std=c11", "-Wall", "-Wextra", "-Werror", *defines, f"-I{NATIVE}",
         str(driver), str(NATIVE / "sha256.c"), "-o", str(exe)],
        check=True, capture_output=True, timeout=120,
    )
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == expected()
