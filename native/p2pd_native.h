/* The C core's public functions: the only declarations native/build_native.py exposes. */
#ifndef P2PD_NATIVE_H
#define P2PD_NATIVE_H
#include <stddef.h>
#include <stdint.h>

/* SHA-256 implementation numbers, passed with every call. AUTO picks the best this
 * CPU runs; SHANI on a CPU without SHA extensions falls back to PORTABLE. */
#define P2PD_SHA256_AUTO 0
#define P2PD_SHA256_PORTABLE 1
#define P2PD_SHA256_SHANI 2

int p2pd_sha256_best(void);
int p2pd_sha256_has_shani_code(void);
/* One buffer -> out[32]. */
void p2pd_sha256(int impl, const uint8_t *data, size_t len, uint8_t *out);
/* n buffers given by pointers and lengths -> out[32 * n]. */
void p2pd_sha256_ptrs(int impl, const uint8_t *const *bufs, const size_t *lens, size_t n,
                      uint8_t *out);
/* n buffers laid end to end in data, lens[i] bytes each -> out[32 * n]. */
void p2pd_sha256_packed(int impl, const uint8_t *data, const uint64_t *lens, size_t n,
                        uint8_t *out);
/* data cut into chunk-byte pieces (the last may be short) -> out[32 * ceil(len / chunk)]. */
void p2pd_sha256_chunks(int impl, const uint8_t *data, size_t len, size_t chunk, uint8_t *out);
/* Indices i where sha256(bufs[i]) != digests[32 i..]; scratch holds 32 * n bytes. */
size_t p2pd_sha256_mismatches(int impl, const uint8_t *const *bufs, const size_t *lens,
                              const uint8_t *digests, size_t n, uint8_t *scratch,
                              uint32_t *bad);
/* Sum of n 64-bit lengths (offsets into a packed buffer). */
uint64_t p2pd_sum_u64(const uint64_t *v, size_t n);

/* SHA-512 of one buffer -> out[64] (the hash inside Ed25519; exposed for tests). */
void p2pd_sha512(const uint8_t *data, size_t len, uint8_t *out);
/* Ed25519 verification under the rule set written at the top of native/ed25519.c:
 * 1 valid, 0 not. pk is 32 bytes, sig 64. */
int p2pd_ed25519_verify(const uint8_t *pk, const uint8_t *msg, size_t len, const uint8_t *sig);
/* n signatures: pks 32 n bytes, sigs 64 n bytes, messages end to end in msgs with lens[i]
 * bytes each; results[i] = 1 valid, 0 not (the same answers as single verification). */
void p2pd_ed25519_verify_batch(size_t n, const uint8_t *pks, const uint8_t *sigs,
                               const uint8_t *msgs, const uint64_t *lens, uint8_t *results);
#endif
