/* SHA-256 (FIPS 180-4): a portable C path and an x86 SHA-extensions path.
 * (-DP2PD_NO_SHANI builds the portable path alone, as on non-x86 machines.)
 *
 * The SHA-extensions path is chosen at run time by CPUID (leaf 7 EBX bit 29 plus
 * SSSE3/SSE4.1); the portable path serves every other machine and can be forced
 * by the caller (p2pd.native passes an implementation number with every call).
 *
 * Batches are hashed two messages at a time on the SHA-extensions path: the
 * sha256rnds2 instruction has a latency of several cycles but issues more
 * often, so two independent block streams interleaved keep the unit busy and
 * nearly double the throughput of a batch or of a chunked buffer.
 *
 * Nothing here allocates or touches Python; the cffi wrapper releases the GIL
 * around every call.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "p2pd_native.h"

static const uint32_t K256[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static const uint32_t H0[8] = {
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
};

/* ---- message framing ----------------------------------------------------------------
 * A message is its full 64-byte blocks read in place, then one or two tail blocks
 * built on the stack (the remaining bytes, 0x80, zeros, the bit length). */
typedef struct {
    const uint8_t *next;   /* next in-place block */
    size_t full_left;      /* in-place blocks still to hash */
    uint8_t tail[128];
    size_t tail_blocks;    /* 1 or 2 */
    size_t tail_done;
} msg_t;

static void msg_init(msg_t *m, const uint8_t *data, size_t len) {
    size_t full = len / 64, rest = len % 64;
    uint64_t bits = (uint64_t)len << 3;
    m->next = data;
    m->full_left = full;
    m->tail_done = 0;
    m->tail_blocks = rest < 56 ? 1 : 2;
    memset(m->tail, 0, sizeof m->tail);
    if (rest) memcpy(m->tail, data + full * 64, rest);
    m->tail[rest] = 0x80;
    uint8_t *end = m->tail + m->tail_blocks * 64;
    for (int i = 0; i < 8; i++) end[-1 - i] = (uint8_t)(bits >> (8 * i));
}

static size_t msg_blocks_left(const msg_t *m) {
    return m->full_left + (m->tail_blocks - m->tail_done);
}

/* Up to `max` contiguous blocks; returns how many (always >= 1 while blocks are left). */
static size_t msg_take(msg_t *m, const uint8_t **p, size_t max) {
    if (m->full_left) {
        size_t n = m->full_left < max ? m->full_left : max;
        *p = m->next;
        m->next += n * 64;
        m->full_left -= n;
        return n;
    }
    size_t n = m->tail_blocks - m->tail_done;
    if (n > max) n = max;
    *p = m->tail + m->tail_done * 64;
    m->tail_done += n;
    return n;
}

static void store_be(uint8_t out[32], const uint32_t s[8]) {
    for (int i = 0; i < 8; i++) {
        out[4 * i] = (uint8_t)(s[i] >> 24);
        out[4 * i + 1] = (uint8_t)(s[i] >> 16);
        out[4 * i + 2] = (uint8_t)(s[i] >> 8);
        out[4 * i + 3] = (uint8_t)s[i];
    }
}

/* ---- portable compression (FIPS 180-4 section 6.2.2) ---------------------------------- */
#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))
#define CH(x, y, z) (((x) & (y)) ^ (~(x) & (z)))
#define MAJ(x, y, z) (((x) & (y)) ^ ((x) & (z)) ^ ((y) & (z)))
#define BSIG0(x) (ROR(x, 2) ^ ROR(x, 13) ^ ROR(x, 22))
#define BSIG1(x) (ROR(x, 6) ^ ROR(x, 11) ^ ROR(x, 25))
#define SSIG0(x) (ROR(x, 7) ^ ROR(x, 18) ^ ((x) >> 3))
#define SSIG1(x) (ROR(x, 17) ^ ROR(x, 19) ^ ((x) >> 10))

static void compress_portable(uint32_t s[8], const uint8_t *p, size_t blocks) {
    uint32_t w[64];
    while (blocks--) {
        for (int t = 0; t < 16; t++)
            w[t] = (uint32_t)p[4 * t] << 24 | (uint32_t)p[4 * t + 1] << 16 |
                   (uint32_t)p[4 * t + 2] << 8 | (uint32_t)p[4 * t + 3];
        for (int t = 16; t < 64; t++)
            w[t] = SSIG1(w[t - 2]) + w[t - 7] + SSIG0(w[t - 15]) + w[t - 16];
        uint32_t a = s[0], b = s[1], c = s[2], d = s[3], e = s[4], f = s[5], g = s[6], h = s[7];
        for (int t = 0; t < 64; t++) {
            uint32_t t1 = h + BSIG1(e) + CH(e, f, g) + K256[t] + w[t];
            uint32_t t2 = BSIG0(a) + MAJ(a, b, c);
            h = g; g = f; f = e; e = d + t1;
            d = c; c = b; b = a; a = t1 + t2;
        }
        s[0] += a; s[1] += b; s[2] += c; s[3] += d;
        s[4] += e; s[5] += f; s[6] += g; s[7] += h;
        p += 64;
    }
}

typedef void (*compress_fn)(uint32_t s[8], const uint8_t *p, size_t blocks);

/* One message, start to digest, with the given compression function. */
static void one_with(compress_fn compress, const uint8_t *data, size_t len, uint8_t out[32]) {
    uint32_t s[8];
    msg_t m;
    const uint8_t *p;
    memcpy(s, H0, sizeof s);
    msg_init(&m, data, len);
    while (msg_blocks_left(&m)) {
        size_t n = msg_take(&m, &p, SIZE_MAX);
        compress(s, p, n);
    }
    store_be(out, s);
}


/* ---- x86 SHA extensions ---------------------------------------------------------------- */
#if (defined(__x86_64__) || defined(__i386__)) && !defined(P2PD_NO_SHANI)
#include <cpuid.h>
#include <immintrin.h>

#define SHANI __attribute__((target("sha,sse4.1,ssse3")))
#define HAVE_SHANI_CODE 1

/* State lives in two registers, ABEF and CDGH, as sha256rnds2 wants it. */
SHANI static inline void shani_load(const uint32_t s[8], __m128i *abef, __m128i *cdgh) {
    __m128i dcba = _mm_loadu_si128((const __m128i *)s);
    __m128i hgfe = _mm_loadu_si128((const __m128i *)(s + 4));
    __m128i cdab = _mm_shuffle_epi32(dcba, 0xB1);
    __m128i efgh = _mm_shuffle_epi32(hgfe, 0x1B);
    *abef = _mm_alignr_epi8(cdab, efgh, 8);
    *cdgh = _mm_blend_epi16(efgh, cdab, 0xF0);
}

SHANI static inline void shani_store(uint32_t s[8], __m128i abef, __m128i cdgh) {
    __m128i feba = _mm_shuffle_epi32(abef, 0x1B);
    __m128i dchg = _mm_shuffle_epi32(cdgh, 0xB1);
    _mm_storeu_si128((__m128i *)s, _mm_blend_epi16(feba, dchg, 0xF0));
    _mm_storeu_si128((__m128i *)(s + 4), _mm_alignr_epi8(dchg, feba, 8));
}

#define BSWAP_MASK _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL)
#define KV(g) _mm_loadu_si128((const __m128i *)(K256 + 4 * (g)))

/* Four rounds with message words w (4 words) into state (abef, cdgh). */
#define QROUND(abef, cdgh, w, g)                                   \
    do {                                                           \
        __m128i m_ = _mm_add_epi32((w), KV(g));                    \
        cdgh = _mm_sha256rnds2_epu32(cdgh, abef, m_);              \
        abef = _mm_sha256rnds2_epu32(abef, cdgh, _mm_shuffle_epi32(m_, 0x0E)); \
    } while (0)

/* Schedule: words 4(g+4)..4(g+4)+3 from the four previous quads. */
#define SCHED(w0, w1, w2, w3) \
    _mm_sha256msg2_epu32(_mm_add_epi32(_mm_sha256msg1_epu32(w0, w1), _mm_alignr_epi8(w3, w2, 4)), w3)

#define SHANI_INLINE SHANI __attribute__((always_inline)) static inline

/* `blocks` blocks into the register state (abef, cdgh). */
SHANI_INLINE void blocks_shani(__m128i *abef_, __m128i *cdgh_, const uint8_t *p, size_t blocks) {
    const __m128i mask = BSWAP_MASK;
    __m128i abef = *abef_, cdgh = *cdgh_;
    while (blocks--) {
        __m128i sa = abef, sc = cdgh;
        __m128i w0 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 0)), mask);
        __m128i w1 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 16)), mask);
        __m128i w2 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 32)), mask);
        __m128i w3 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 48)), mask);
        QROUND(abef, cdgh, w0, 0);
        QROUND(abef, cdgh, w1, 1);
        QROUND(abef, cdgh, w2, 2);
        QROUND(abef, cdgh, w3, 3);
        for (int g = 4; g < 16; g += 4) {
            w0 = SCHED(w0, w1, w2, w3); QROUND(abef, cdgh, w0, g);
            w1 = SCHED(w1, w2, w3, w0); QROUND(abef, cdgh, w1, g + 1);
            w2 = SCHED(w2, w3, w0, w1); QROUND(abef, cdgh, w2, g + 2);
            w3 = SCHED(w3, w0, w1, w2); QROUND(abef, cdgh, w3, g + 3);
        }
        abef = _mm_add_epi32(abef, sa);
        cdgh = _mm_add_epi32(cdgh, sc);
        p += 64;
    }
    *abef_ = abef;
    *cdgh_ = cdgh;
}

SHANI static void compress_shani(uint32_t s[8], const uint8_t *p, size_t blocks) {
    __m128i abef, cdgh;
    shani_load(s, &abef, &cdgh);
    blocks_shani(&abef, &cdgh, p, blocks);
    shani_store(s, abef, cdgh);
}

/* Two independent streams, `blocks` blocks each, interleaved round by round. */
SHANI_INLINE void blocks_shani_x2(__m128i *ae_, __m128i *ac_, const uint8_t *pa, __m128i *be_,
                                  __m128i *bc_, const uint8_t *pb, size_t blocks) {
    const __m128i mask = BSWAP_MASK;
    __m128i ae = *ae_, ac = *ac_, be = *be_, bc = *bc_;
    while (blocks--) {
        __m128i sae = ae, sac = ac, sbe = be, sbc = bc;
        __m128i a0 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(pa + 0)), mask);
        __m128i b0 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(pb + 0)), mask);
        __m128i a1 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(pa + 16)), mask);
        __m128i b1 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(pb + 16)), mask);
        __m128i a2 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(pa + 32)), mask);
        __m128i b2 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(pb + 32)), mask);
        __m128i a3 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(pa + 48)), mask);
        __m128i b3 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(pb + 48)), mask);
        QROUND(ae, ac, a0, 0); QROUND(be, bc, b0, 0);
        QROUND(ae, ac, a1, 1); QROUND(be, bc, b1, 1);
        QROUND(ae, ac, a2, 2); QROUND(be, bc, b2, 2);
        QROUND(ae, ac, a3, 3); QROUND(be, bc, b3, 3);
        for (int g = 4; g < 16; g += 4) {
            a0 = SCHED(a0, a1, a2, a3); b0 = SCHED(b0, b1, b2, b3);
            QROUND(ae, ac, a0, g); QROUND(be, bc, b0, g);
            a1 = SCHED(a1, a2, a3, a0); b1 = SCHED(b1, b2, b3, b0);
            QROUND(ae, ac, a1, g + 1); QROUND(be, bc, b1, g + 1);
            a2 = SCHED(a2, a3, a0, a1); b2 = SCHED(b2, b3, b0, b1);
            QROUND(ae, ac, a2, g + 2); QROUND(be, bc, b2, g + 2);
            a3 = SCHED(a3, a0, a1, a2); b3 = SCHED(b3, b0, b1, b2);
            QROUND(ae, ac, a3, g + 3); QROUND(be, bc, b3, g + 3);
        }
        ae = _mm_add_epi32(ae, sae); ac = _mm_add_epi32(ac, sac);
        be = _mm_add_epi32(be, sbe); bc = _mm_add_epi32(bc, sbc);
        pa += 64;
        pb += 64;
    }
    *ae_ = ae; *ac_ = ac; *be_ = be; *bc_ = bc;
}

/* Two messages at once: lockstep while both have blocks, then finish the longer.
 * The states stay in registers from the first block to the last. */
SHANI static void pair_shani(const uint8_t *da, size_t la, uint8_t outa[32],
                             const uint8_t *db, size_t lb, uint8_t outb[32]) {
    uint32_t s[8];
    msg_t ma, mb;
    __m128i ae, ac, be, bc;
    shani_load(H0, &ae, &ac);
    be = ae;
    bc = ac;
    msg_init(&ma, da, la);
    msg_init(&mb, db, lb);
    while (msg_blocks_left(&ma) && msg_blocks_left(&mb)) {
        const uint8_t *pa, *pb;
        /* The same count from both; contiguous runs end at the in-place/tail border. */
        size_t run = ma.full_left ? ma.full_left : ma.tail_blocks - ma.tail_done;
        size_t runb = mb.full_left ? mb.full_left : mb.tail_blocks - mb.tail_done;
        if (runb < run) run = runb;
        msg_take(&ma, &pa, run);
        msg_take(&mb, &pb, run);
        blocks_shani_x2(&ae, &ac, pa, &be, &bc, pb, run);
    }
    while (msg_blocks_left(&ma)) {
        const uint8_t *p;
        size_t n = msg_take(&ma, &p, SIZE_MAX);
        blocks_shani(&ae, &ac, p, n);
    }
    while (msg_blocks_left(&mb)) {
        const uint8_t *p;
        size_t n = msg_take(&mb, &p, SIZE_MAX);
        blocks_shani(&be, &bc, p, n);
    }
    shani_store(s, ae, ac);
    store_be(outa, s);
    shani_store(s, be, bc);
    store_be(outb, s);
}

static int cpu_has_shani(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    if (!(c & (1u << 9)) || !(c & (1u << 19))) return 0; /* SSSE3, SSE4.1 */
    if (__get_cpuid_max(0, NULL) < 7) return 0;
    __cpuid_count(7, 0, a, b, c, d);
    return (b >> 29) & 1;
}
#else
#define HAVE_SHANI_CODE 0
static int cpu_has_shani(void) { return 0; }
static void compress_shani(uint32_t s[8], const uint8_t *p, size_t blocks) {
    compress_portable(s, p, blocks);
}
static void pair_shani(const uint8_t *da, size_t la, uint8_t outa[32],
                       const uint8_t *db, size_t lb, uint8_t outb[32]) {
    one_with(compress_portable, da, la, outa);
    one_with(compress_portable, db, lb, outb);
}
#endif

/* ---- dispatch ---------------------------------------------------------------------------- */
static int best_impl = -1;

int p2pd_sha256_best(void) {
    if (best_impl < 0) best_impl = cpu_has_shani() ? P2PD_SHA256_SHANI : P2PD_SHA256_PORTABLE;
    return best_impl;
}

static int resolve(int impl) {
    if (impl == P2PD_SHA256_AUTO) return p2pd_sha256_best();
    if (impl == P2PD_SHA256_SHANI && p2pd_sha256_best() != P2PD_SHA256_SHANI)
        return P2PD_SHA256_PORTABLE;
    return impl;
}

static void one(int impl, const uint8_t *data, size_t len, uint8_t out[32]) {
    one_with(impl == P2PD_SHA256_SHANI ? compress_shani : compress_portable, data, len, out);
}

/* Hash message i for every i in [0, n); get(i) yields its pointer and length. */
#define FOR_EACH_MESSAGE(impl, n, GET, OUT)                                      \
    do {                                                                         \
        size_t i_ = 0;                                                           \
        if ((impl) == P2PD_SHA256_SHANI) {                                       \
            for (; i_ + 1 < (n); i_ += 2) {                                      \
                const uint8_t *pa_, *pb_;                                        \
                size_t la_, lb_;                                                 \
                GET(i_, pa_, la_);                                               \
                GET(i_ + 1, pb_, lb_);                                           \
                pair_shani(pa_, la_, OUT(i_), pb_, lb_, OUT(i_ + 1));            \
            }                                                                    \
        }                                                                        \
        for (; i_ < (n); i_++) {                                                 \
            const uint8_t *p_;                                                   \
            size_t l_;                                                           \
            GET(i_, p_, l_);                                                     \
            one((impl), p_, l_, OUT(i_));                                        \
        }                                                                        \
    } while (0)

void p2pd_sha256(int impl, const uint8_t *data, size_t len, uint8_t *out) {
    one(resolve(impl), data, len, out);
}

void p2pd_sha256_ptrs(int impl, const uint8_t *const *bufs, const size_t *lens, size_t n,
                      uint8_t *out) {
    impl = resolve(impl);
#define GET_PTR(i, p, l) (p = bufs[i], l = lens[i])
#define OUT_AT(i) (out + 32 * (i))
    FOR_EACH_MESSAGE(impl, n, GET_PTR, OUT_AT);
}

void p2pd_sha256_packed(int impl, const uint8_t *data, const uint64_t *lens, size_t n,
                        uint8_t *out) {
    impl = resolve(impl);
    size_t off = 0;
    size_t i_pair = 0;
    if (impl == P2PD_SHA256_SHANI) {
        for (; i_pair + 1 < n; i_pair += 2) {
            size_t la = (size_t)lens[i_pair], lb = (size_t)lens[i_pair + 1];
            pair_shani(data + off, la, out + 32 * i_pair, data + off + la, lb,
                       out + 32 * (i_pair + 1));
            off += la + lb;
        }
    }
    for (; i_pair < n; i_pair++) {
        size_t l = (size_t)lens[i_pair];
        one(impl, data + off, l, out + 32 * i_pair);
        off += l;
    }
}

void p2pd_sha256_chunks(int impl, const uint8_t *data, size_t len, size_t chunk, uint8_t *out) {
    impl = resolve(impl);
    if (chunk == 0 || len == 0) return;
    size_t n = (len + chunk - 1) / chunk;
#define GET_CHUNK(i, p, l) (p = data + (i) * chunk, l = ((i) + 1 < n ? chunk : len - (i) * chunk))
    FOR_EACH_MESSAGE(impl, n, GET_CHUNK, OUT_AT);
}

size_t p2pd_sha256_mismatches(int impl, const uint8_t *const *bufs, const size_t *lens,
                              const uint8_t *digests, size_t n, uint8_t *scratch,
                              uint32_t *bad) {
    p2pd_sha256_ptrs(impl, bufs, lens, n, scratch);
    size_t nbad = 0;
    for (size_t i = 0; i < n; i++)
        if (memcmp(scratch + 32 * i, digests + 32 * i, 32) != 0) bad[nbad++] = (uint32_t)i;
    return nbad;
}

int p2pd_sha256_has_shani_code(void) { return HAVE_SHANI_CODE; }

uint64_t p2pd_sum_u64(const uint64_t *v, size_t n) {
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) total += v[i];
    return total;
}
