/* SHA-512 streaming interface, internal to the C core (the public call is in p2pd_native.h). */
#ifndef P2PD_SHA512_H
#define P2PD_SHA512_H
#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint64_t s[8];
    uint64_t len;
    uint8_t buf[128];
    size_t fill;
} sha512_ctx;

void sha512_init(sha512_ctx *c);
void sha512_update(sha512_ctx *c, const uint8_t *data, size_t len);
void sha512_final(sha512_ctx *c, uint8_t out[64]);
#endif
