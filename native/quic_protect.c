/* QUIC packet protection on libcrypto: see quic_protect.h. Every call works on caller
 * buffers whose sizes the Python face checked; nothing here allocates per packet. */
#include "quic_protect.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#define TAG_LEN 16
#define SAMPLE_LEN 16
#define PN_MAX 4

struct p2pd_quic_aead {
    EVP_CIPHER_CTX *ctx;
    uint8_t iv[12];
};

struct p2pd_quic_hp {
    EVP_CIPHER_CTX *ctx;
    int chacha;
};

static const EVP_CIPHER *aead_cipher(int cipher, size_t key_len) {
    if (cipher == P2PD_QUIC_AES_128_GCM && key_len == 16) return EVP_aes_128_gcm();
    if (cipher == P2PD_QUIC_AES_256_GCM && key_len == 32) return EVP_aes_256_gcm();
    if (cipher == P2PD_QUIC_CHACHA20_POLY1305 && key_len == 32) return EVP_chacha20_poly1305();
    return NULL;
}

p2pd_quic_aead *p2pd_quic_aead_new(int cipher, const uint8_t *key, size_t key_len,
                                   const uint8_t *iv) {
    const EVP_CIPHER *c = aead_cipher(cipher, key_len);
    if (c == NULL) return NULL;
    p2pd_quic_aead *a = calloc(1, sizeof *a);
    if (a == NULL) return NULL;
    a->ctx = EVP_CIPHER_CTX_new();
    if (a->ctx == NULL || EVP_CipherInit_ex(a->ctx, c, NULL, key, NULL, 1) != 1) {
        p2pd_quic_aead_free(a);
        return NULL;
    }
    memcpy(a->iv, iv, 12);
    return a;
}

void p2pd_quic_aead_free(p2pd_quic_aead *a) {
    if (a == NULL) return;
    EVP_CIPHER_CTX_free(a->ctx);
    OPENSSL_cleanse(a->iv, sizeof a->iv);
    free(a);
}

static void nonce_of(const p2pd_quic_aead *a, uint64_t pn, uint8_t nonce[12]) {
    memcpy(nonce, a->iv, 12);
    for (int i = 0; i < 8; i++) nonce[11 - i] ^= (uint8_t)(pn >> (8 * i));
}

long p2pd_quic_seal(p2pd_quic_aead *a, uint64_t pn, const uint8_t *ad, size_t ad_len,
                    const uint8_t *in, size_t len, uint8_t *out) {
    uint8_t nonce[12];
    int n = 0, f = 0;
    nonce_of(a, pn, nonce);
    if (EVP_CipherInit_ex(a->ctx, NULL, NULL, NULL, nonce, 1) != 1) return -1;
    if (EVP_CipherUpdate(a->ctx, NULL, &n, ad, (int)ad_len) != 1) return -1;
    if (EVP_CipherUpdate(a->ctx, out, &n, in, (int)len) != 1) return -1;
    if (EVP_CipherFinal_ex(a->ctx, out + n, &f) != 1) return -1;
    if (EVP_CIPHER_CTX_ctrl(a->ctx, EVP_CTRL_AEAD_GET_TAG, TAG_LEN, out + len) != 1) return -1;
    return (long)(len + TAG_LEN);
}

long p2pd_quic_open(p2pd_quic_aead *a, uint64_t pn, const uint8_t *ad, size_t ad_len,
                    const uint8_t *in, size_t len, uint8_t *out) {
    uint8_t nonce[12], tag[TAG_LEN];
    int n = 0, f = 0;
    if (len < TAG_LEN) return -1;
    len -= TAG_LEN;
    memcpy(tag, in + len, TAG_LEN);
    nonce_of(a, pn, nonce);
    if (EVP_CipherInit_ex(a->ctx, NULL, NULL, NULL, nonce, 0) != 1) return -1;
    if (EVP_CipherUpdate(a->ctx, NULL, &n, ad, (int)ad_len) != 1) return -1;
    if (EVP_CipherUpdate(a->ctx, out, &n, in, (int)len) != 1) return -1;
    if (EVP_CIPHER_CTX_ctrl(a->ctx, EVP_CTRL_AEAD_SET_TAG, TAG_LEN, tag) != 1) return -1;
    if (EVP_CipherFinal_ex(a->ctx, out + n, &f) != 1) return -1;
    return (long)len;
}

p2pd_quic_hp *p2pd_quic_hp_new(int cipher, const uint8_t *key, size_t key_len) {
    const EVP_CIPHER *c = NULL;
    if (cipher == P2PD_QUIC_AES_128_GCM && key_len == 16) c = EVP_aes_128_ecb();
    else if (cipher == P2PD_QUIC_AES_256_GCM && key_len == 32) c = EVP_aes_256_ecb();
    else if (cipher == P2PD_QUIC_CHACHA20_POLY1305 && key_len == 32) c = EVP_chacha20();
    if (c == NULL) return NULL;
    p2pd_quic_hp *h = calloc(1, sizeof *h);
    if (h == NULL) return NULL;
    h->chacha = cipher == P2PD_QUIC_CHACHA20_POLY1305;
    h->ctx = EVP_CIPHER_CTX_new();
    if (h->ctx == NULL || EVP_EncryptInit_ex(h->ctx, c, NULL, key, NULL) != 1) {
        p2pd_quic_hp_free(h);
        return NULL;
    }
    EVP_CIPHER_CTX_set_padding(h->ctx, 0);
    return h;
}

void p2pd_quic_hp_free(p2pd_quic_hp *h) {
    if (h == NULL) return;
    EVP_CIPHER_CTX_free(h->ctx);
    free(h);
}

/* mask[5] from a 16-byte sample (RFC 9001 5.4.3, 5.4.4) */
static int mask_of(p2pd_quic_hp *h, const uint8_t *sample, uint8_t mask[5]) {
    uint8_t block[SAMPLE_LEN];
    int n = 0;
    if (h->chacha) {
        static const uint8_t zeros[5];
        /* EVP_chacha20's 16-byte IV is the block counter (4 bytes, little-endian) then the
         * 12-byte nonce: the sample exactly */
        if (EVP_EncryptInit_ex(h->ctx, NULL, NULL, NULL, sample) != 1) return -1;
        if (EVP_EncryptUpdate(h->ctx, block, &n, zeros, 5) != 1) return -1;
    } else if (EVP_EncryptUpdate(h->ctx, block, &n, sample, SAMPLE_LEN) != 1) {
        return -1;
    }
    memcpy(mask, block, 5);
    return 0;
}

long p2pd_quic_hp_apply(p2pd_quic_hp *h, const uint8_t *header, size_t header_len,
                        const uint8_t *payload, size_t payload_len, uint8_t *out) {
    uint8_t mask[5];
    if (header_len < 1) return -1;
    size_t pn_len = (size_t)(header[0] & 0x03) + 1;
    if (header_len < pn_len + 1) return -1;
    size_t sample_offset = PN_MAX - pn_len;
    if (payload_len < sample_offset + SAMPLE_LEN) return -1;
    if (mask_of(h, payload + sample_offset, mask) != 0) return -1;
    memcpy(out, header, header_len);
    memcpy(out + header_len, payload, payload_len);
    out[0] ^= mask[0] & ((out[0] & 0x80) ? 0x0F : 0x1F);
    size_t pn_offset = header_len - pn_len;
    for (size_t i = 0; i < pn_len; i++) out[pn_offset + i] ^= mask[1 + i];
    return (long)(header_len + payload_len);
}

long p2pd_quic_hp_remove(p2pd_quic_hp *h, const uint8_t *packet, size_t len,
                         size_t pn_offset, uint8_t *out, uint32_t *pn) {
    uint8_t mask[5];
    size_t sample_offset = pn_offset + PN_MAX;
    if (pn_offset < 1 || sample_offset + SAMPLE_LEN > len) return -1;
    if (mask_of(h, packet + sample_offset, mask) != 0) return -1;
    memcpy(out, packet, pn_offset + PN_MAX);
    out[0] ^= mask[0] & ((out[0] & 0x80) ? 0x0F : 0x1F);
    size_t pn_len = (size_t)(out[0] & 0x03) + 1;
    uint32_t v = 0;
    for (size_t i = 0; i < pn_len; i++) {
        out[pn_offset + i] ^= mask[1 + i];
        v = (v << 8) | out[pn_offset + i];
    }
    *pn = v;
    return (long)(pn_offset + pn_len);
}
