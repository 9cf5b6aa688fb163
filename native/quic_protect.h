/* QUIC packet protection (RFC 9001 5.3, 5.4): AEAD and header protection with OpenSSL's
 * libcrypto, key schedules set once per key. The only declarations build_quic.py exposes. */
#ifndef P2PD_QUIC_PROTECT_H
#define P2PD_QUIC_PROTECT_H
#include <stddef.h>
#include <stdint.h>

/* cipher numbers: AEAD and header protection of the TLS 1.3 suites QUIC uses */
#define P2PD_QUIC_AES_128_GCM 0
#define P2PD_QUIC_AES_256_GCM 1
#define P2PD_QUIC_CHACHA20_POLY1305 2

typedef struct p2pd_quic_aead p2pd_quic_aead;
typedef struct p2pd_quic_hp p2pd_quic_hp;

/* key is 16 or 32 bytes as the cipher wants, iv 12; NULL on a bad cipher or key length. */
p2pd_quic_aead *p2pd_quic_aead_new(int cipher, const uint8_t *key, size_t key_len,
                                   const uint8_t *iv);
void p2pd_quic_aead_free(p2pd_quic_aead *a);
/* out gets len + 16 bytes (ciphertext, tag); the nonce is iv XOR the packet number.
 * Returns the bytes written, or -1. */
long p2pd_quic_seal(p2pd_quic_aead *a, uint64_t pn, const uint8_t *ad, size_t ad_len,
                    const uint8_t *in, size_t len, uint8_t *out);
/* out gets len - 16 bytes; -1 if the tag does not match (or len < 16). */
long p2pd_quic_open(p2pd_quic_aead *a, uint64_t pn, const uint8_t *ad, size_t ad_len,
                    const uint8_t *in, size_t len, uint8_t *out);

p2pd_quic_hp *p2pd_quic_hp_new(int cipher, const uint8_t *key, size_t key_len);
void p2pd_quic_hp_free(p2pd_quic_hp *h);
/* Header protection applied: out (header_len + payload_len bytes) = header || payload with
 * the first byte and the packet number masked from the sample in payload. -1 if the
 * payload is too short to sample. */
long p2pd_quic_hp_apply(p2pd_quic_hp *h, const uint8_t *header, size_t header_len,
                        const uint8_t *payload, size_t payload_len, uint8_t *out);
/* Header protection removed from packet (the packet number at pn_offset): out gets the
 * plain header (pn_offset + packet number length bytes, at most pn_offset + 4), *pn the
 * truncated packet number. Returns the header length, or -1 if too short to sample. */
long p2pd_quic_hp_remove(p2pd_quic_hp *h, const uint8_t *packet, size_t len,
                         size_t pn_offset, uint8_t *out, uint32_t *pn);
#endif
