/* Ed25519 signature verification (RFC 8032), single and batched. Verification only:
 * signing and key generation stay in PyNaCl. Everything here works on public data,
 * so it is variable time.
 *
 * THE RULE SET (chosen first, so single and batch verification agree on every input;
 * see docs/ed25519.md and "Taming the many EdDSAs", Chalkias, Garillot, Nikolaenko):
 *   1. The public key A is 32 bytes and the signature R || S is 64 bytes.
 *   2. A and R must be canonical encodings: y < p, and not x = 0 with the sign bit set.
 *      They must decode to curve points.
 *   3. A and R must not be of small order (one of the 8 points of order 1, 2, 4 or 8).
 *      Mixed-order points (a small-order component plus a large one) are accepted.
 *   4. S must be canonical: S < L.
 *   5. The equation is cofactored: [8][S]B = [8]R + [8][k]A, with
 *      k = SHA-512(R || A || M) mod L over the bytes of R and A as given.
 * On the 12 vectors of ed25519-speccheck this gives X X X V V V X X X X X X (cases 0-11).
 *
 * Arithmetic: field elements mod p = 2^255 - 19 in radix 2^51 (five 64-bit limbs,
 * products in unsigned __int128); points in extended twisted Edwards coordinates
 * (X:Y:Z:T), a = -1 (Hisil, Wong, Carter, Dawson 2008); scalars mod L by Barrett
 * reduction in base 2^64. Single verification computes [k](-A) + [S]B with interleaved
 * width-5 NAF for A and a width-8 NAF over a precomputed table of odd multiples of B;
 * when that point's encoding equals R the cofactored equation holds too (fast path),
 * otherwise R is decoded and [8](P - R) is checked against the identity.
 *
 * Batches use the random linear combination: with random 128-bit z_i from the OS,
 *   [8]( [sum z_i S_i]B + sum [z_i](-R_i) + sum [z_i k_i](-A_i) ) = identity
 * computed as one Straus multi-scalar multiplication (shared doublings, width-5 NAF
 * per point). A failing batch is bisected down to single checks, so every signature
 * gets its own answer, the same one single verification gives.
 */
#define _DEFAULT_SOURCE 1 /* getrandom, O_CLOEXEC under -std=c11 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#if defined(__linux__)
#include <sys/random.h>
#endif

#include "p2pd_native.h"
#include "sha512.h"

typedef unsigned __int128 u128;
typedef struct { uint64_t v[5]; } fe;

#define MASK51 ((1ULL << 51) - 1)

/* ---- field arithmetic mod p = 2^255 - 19 ------------------------------------------------ */
static const fe FE_ZERO = {{0, 0, 0, 0, 0}};
static const fe FE_ONE = {{1, 0, 0, 0, 0}};
static const fe FE_D = {{0x34dca135978a3ULL, 0x1a8283b156ebdULL, 0x5e7a26001c029ULL,
                         0x739c663a03cbbULL, 0x52036cee2b6ffULL}};
static const fe FE_D2 = {{0x69b9426b2f159ULL, 0x35050762add7aULL, 0x3cf44c0038052ULL,
                          0x6738cc7407977ULL, 0x2406d9dc56dffULL}};
static const fe FE_SQRTM1 = {{0x61b274a0ea0b0ULL, 0x0d5a5fc8f189dULL, 0x7ef5e9cbd0c60ULL,
                              0x78595a6804c9eULL, 0x2b8324804fc1dULL}};
static const fe FE_BX = {{0x62d608f25d51aULL, 0x412a4b4f6592aULL, 0x75b7171a4b31dULL,
                          0x1ff60527118feULL, 0x216936d3cd6e5ULL}};
static const fe FE_BY = {{0x6666666666658ULL, 0x4ccccccccccccULL, 0x1999999999999ULL,
                          0x3333333333333ULL, 0x6666666666666ULL}};

/* Limbs stay below 2^52 between operations: every add and sub carries once. */
static inline void fe_carry(fe *h) {
    uint64_t c;
    c = h->v[0] >> 51; h->v[0] &= MASK51; h->v[1] += c;
    c = h->v[1] >> 51; h->v[1] &= MASK51; h->v[2] += c;
    c = h->v[2] >> 51; h->v[2] &= MASK51; h->v[3] += c;
    c = h->v[3] >> 51; h->v[3] &= MASK51; h->v[4] += c;
    c = h->v[4] >> 51; h->v[4] &= MASK51; h->v[0] += 19 * c;
}

static inline void fe_add(fe *h, const fe *f, const fe *g) {
    for (int i = 0; i < 5; i++) h->v[i] = f->v[i] + g->v[i];
    fe_carry(h);
}

/* f - g + 4p: 4p in limbs keeps every limb positive for g < 2^53. */
static inline void fe_sub(fe *h, const fe *f, const fe *g) {
    h->v[0] = f->v[0] + 0x1fffffffffffb4ULL - g->v[0];
    h->v[1] = f->v[1] + 0x1ffffffffffffcULL - g->v[1];
    h->v[2] = f->v[2] + 0x1ffffffffffffcULL - g->v[2];
    h->v[3] = f->v[3] + 0x1ffffffffffffcULL - g->v[3];
    h->v[4] = f->v[4] + 0x1ffffffffffffcULL - g->v[4];
    fe_carry(h);
}

static inline void fe_neg(fe *h, const fe *f) { fe_sub(h, &FE_ZERO, f); }

static inline void fe_reduce_wide(fe *h, u128 r0, u128 r1, u128 r2, u128 r3, u128 r4) {
    r1 += (uint64_t)(r0 >> 51);
    r2 += (uint64_t)(r1 >> 51);
    r3 += (uint64_t)(r2 >> 51);
    r4 += (uint64_t)(r3 >> 51);
    uint64_t c = (uint64_t)(r4 >> 51);
    uint64_t h0 = ((uint64_t)r0 & MASK51) + 19 * c;
    h->v[0] = h0 & MASK51;
    h->v[1] = ((uint64_t)r1 & MASK51) + (h0 >> 51);
    h->v[2] = (uint64_t)r2 & MASK51;
    h->v[3] = (uint64_t)r3 & MASK51;
    h->v[4] = (uint64_t)r4 & MASK51;
}

static inline void fe_mul(fe *h, const fe *f, const fe *g) {
    uint64_t f0 = f->v[0], f1 = f->v[1], f2 = f->v[2], f3 = f->v[3], f4 = f->v[4];
    uint64_t g0 = g->v[0], g1 = g->v[1], g2 = g->v[2], g3 = g->v[3], g4 = g->v[4];
    uint64_t g1_19 = 19 * g1, g2_19 = 19 * g2, g3_19 = 19 * g3, g4_19 = 19 * g4;
    u128 r0 = (u128)f0 * g0 + (u128)f1 * g4_19 + (u128)f2 * g3_19 + (u128)f3 * g2_19 + (u128)f4 * g1_19;
    u128 r1 = (u128)f0 * g1 + (u128)f1 * g0 + (u128)f2 * g4_19 + (u128)f3 * g3_19 + (u128)f4 * g2_19;
    u128 r2 = (u128)f0 * g2 + (u128)f1 * g1 + (u128)f2 * g0 + (u128)f3 * g4_19 + (u128)f4 * g3_19;
    u128 r3 = (u128)f0 * g3 + (u128)f1 * g2 + (u128)f2 * g1 + (u128)f3 * g0 + (u128)f4 * g4_19;
    u128 r4 = (u128)f0 * g4 + (u128)f1 * g3 + (u128)f2 * g2 + (u128)f3 * g1 + (u128)f4 * g0;
    fe_reduce_wide(h, r0, r1, r2, r3, r4);
}

static inline void fe_sq(fe *h, const fe *f) {
    uint64_t f0 = f->v[0], f1 = f->v[1], f2 = f->v[2], f3 = f->v[3], f4 = f->v[4];
    uint64_t f0_2 = 2 * f0, f1_2 = 2 * f1;
    uint64_t f1_38 = 38 * f1, f2_38 = 38 * f2, f3_38 = 38 * f3, f3_19 = 19 * f3, f4_19 = 19 * f4;
    u128 r0 = (u128)f0 * f0 + (u128)f1_38 * f4 + (u128)f2_38 * f3;
    u128 r1 = (u128)f0_2 * f1 + (u128)f2_38 * f4 + (u128)f3_19 * f3;
    u128 r2 = (u128)f0_2 * f2 + (u128)f1 * f1 + (u128)f3_38 * f4;
    u128 r3 = (u128)f0_2 * f3 + (u128)f1_2 * f2 + (u128)f4_19 * f4;
    u128 r4 = (u128)f0_2 * f4 + (u128)f1_2 * f3 + (u128)f2 * f2;
    fe_reduce_wide(h, r0, r1, r2, r3, r4);
}

static inline void fe_sqn(fe *h, const fe *f, int n) {
    fe_sq(h, f);
    while (--n > 0) fe_sq(h, h);
}

/* z^(2^250 - 1) and z^11, the common head of inversion and square root. */
static void fe_pow_250(fe *z250, fe *z11, const fe *z) {
    fe z2, z9, t, z5, z10, z20, z40, z50, z100;
    fe_sq(&z2, z);
    fe_sqn(&t, &z2, 2);
    fe_mul(&z9, &t, z);
    fe_mul(z11, &z9, &z2);
    fe_sq(&t, z11);
    fe_mul(&z5, &t, &z9);                        /* 2^5 - 1 */
    fe_sqn(&t, &z5, 5);   fe_mul(&z10, &t, &z5);   /* 2^10 - 1 */
    fe_sqn(&t, &z10, 10); fe_mul(&z20, &t, &z10);  /* 2^20 - 1 */
    fe_sqn(&t, &z20, 20); fe_mul(&z40, &t, &z20);  /* 2^40 - 1 */
    fe_sqn(&t, &z40, 10); fe_mul(&z50, &t, &z10);  /* 2^50 - 1 */
    fe_sqn(&t, &z50, 50); fe_mul(&z100, &t, &z50); /* 2^100 - 1 */
    fe_sqn(&t, &z100, 100); fe_mul(&t, &t, &z100); /* 2^200 - 1 */
    fe_sqn(&t, &t, 50);   fe_mul(z250, &t, &z50);  /* 2^250 - 1 */
}

static void fe_invert(fe *out, const fe *z) { /* z^(p-2) = z^(2^255 - 21) */
    fe z250, z11, t;
    fe_pow_250(&z250, &z11, z);
    fe_sqn(&t, &z250, 5);
    fe_mul(out, &t, &z11);
}

static void fe_pow22523(fe *out, const fe *z) { /* z^((p-5)/8) = z^(2^252 - 3) */
    fe z250, z11, t;
    fe_pow_250(&z250, &z11, z);
    fe_sqn(&t, &z250, 2);
    fe_mul(out, &t, z);
}

static void fe_tobytes(uint8_t s[32], const fe *f) {
    fe h = *f;
    fe_carry(&h);
    fe_carry(&h);
    /* Now h < 2^255 + small; subtract p when h >= p. */
    uint64_t q = (h.v[0] + 19) >> 51;
    q = (h.v[1] + q) >> 51;
    q = (h.v[2] + q) >> 51;
    q = (h.v[3] + q) >> 51;
    q = (h.v[4] + q) >> 51;
    h.v[0] += 19 * q;
    uint64_t c;
    c = h.v[0] >> 51; h.v[0] &= MASK51; h.v[1] += c;
    c = h.v[1] >> 51; h.v[1] &= MASK51; h.v[2] += c;
    c = h.v[2] >> 51; h.v[2] &= MASK51; h.v[3] += c;
    c = h.v[3] >> 51; h.v[3] &= MASK51; h.v[4] += c;
    h.v[4] &= MASK51;
    uint64_t w[4] = {
        h.v[0] | (h.v[1] << 51),
        (h.v[1] >> 13) | (h.v[2] << 38),
        (h.v[2] >> 26) | (h.v[3] << 25),
        (h.v[3] >> 39) | (h.v[4] << 12),
    };
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 8; j++) s[8 * i + j] = (uint8_t)(w[i] >> (8 * j));
}

static uint64_t load64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

/* The low 255 bits of s (the caller checks canonicity). */
static void fe_frombytes(fe *h, const uint8_t s[32]) {
    uint64_t w0 = load64(s), w1 = load64(s + 8), w2 = load64(s + 16), w3 = load64(s + 24);
    h->v[0] = w0 & MASK51;
    h->v[1] = ((w0 >> 51) | (w1 << 13)) & MASK51;
    h->v[2] = ((w1 >> 38) | (w2 << 26)) & MASK51;
    h->v[3] = ((w2 >> 25) | (w3 << 39)) & MASK51;
    h->v[4] = (w3 >> 12) & MASK51;
}

static int fe_iszero(const fe *f) {
    uint8_t s[32], acc = 0;
    fe_tobytes(s, f);
    for (int i = 0; i < 32; i++) acc |= s[i];
    return acc == 0;
}

static int fe_isodd(const fe *f) {
    uint8_t s[32];
    fe_tobytes(s, f);
    return s[0] & 1;
}

static int fe_equal(const fe *f, const fe *g) {
    fe d;
    fe_sub(&d, f, g);
    return fe_iszero(&d);
}

/* ---- points -------------------------------------------------------------------------------- */
typedef struct { fe X, Y, Z; } ge_p2;                 /* projective */
typedef struct { fe X, Y, Z, T; } ge_p3;              /* extended: x = X/Z, y = Y/Z, xy = T/Z */
typedef struct { fe E, F, G, H; } ge_p1p1;            /* X = EF, Y = GH, Z = FG, T = EH */
typedef struct { fe YplusX, YminusX, T2d, Z2; } ge_cached;
typedef struct { fe yplusx, yminusx, xy2d; } ge_niels; /* affine, Z = 1 */

static void p1p1_to_p2(ge_p2 *r, const ge_p1p1 *p) {
    fe_mul(&r->X, &p->E, &p->F);
    fe_mul(&r->Y, &p->G, &p->H);
    fe_mul(&r->Z, &p->F, &p->G);
}

static void p1p1_to_p3(ge_p3 *r, const ge_p1p1 *p) {
    fe_mul(&r->X, &p->E, &p->F);
    fe_mul(&r->Y, &p->G, &p->H);
    fe_mul(&r->Z, &p->F, &p->G);
    fe_mul(&r->T, &p->E, &p->H);
}

static void p3_to_cached(ge_cached *r, const ge_p3 *p) {
    fe_add(&r->YplusX, &p->Y, &p->X);
    fe_sub(&r->YminusX, &p->Y, &p->X);
    fe_mul(&r->T2d, &p->T, &FE_D2);
    fe_add(&r->Z2, &p->Z, &p->Z);
}

static void p3_identity(ge_p3 *r) {
    r->X = FE_ZERO; r->Y = FE_ONE; r->Z = FE_ONE; r->T = FE_ZERO;
}

/* 2P for a = -1 (dbl-2008-hwcd); needs no T. */
static void ge_dbl(ge_p1p1 *r, const ge_p2 *p) {
    fe A, B, C, s, t;
    fe_sq(&A, &p->X);
    fe_sq(&B, &p->Y);
    fe_sq(&C, &p->Z);
    fe_add(&C, &C, &C);
    fe_add(&s, &p->X, &p->Y);
    fe_sq(&s, &s);
    fe_add(&t, &A, &B);
    fe_sub(&r->E, &s, &t);       /* E = (X+Y)^2 - A - B */
    fe_neg(&r->H, &t);           /* H = D - B = -A - B */
    fe_sub(&r->G, &B, &A);       /* G = D + B = B - A */
    fe_sub(&r->F, &r->G, &C);    /* F = G - C */
}

static void ge_p3_dbl(ge_p1p1 *r, const ge_p3 *p) {
    ge_p2 q = {p->X, p->Y, p->Z};
    ge_dbl(r, &q);
}

/* P + Q (sign = +1) or P - Q (sign = -1), Q cached. */
static void ge_add_cached(ge_p1p1 *r, const ge_p3 *p, const ge_cached *q, int sign) {
    fe A, B, C, D, a, b;
    fe_sub(&a, &p->Y, &p->X);
    fe_add(&b, &p->Y, &p->X);
    fe_mul(&A, &a, sign > 0 ? &q->YminusX : &q->YplusX);
    fe_mul(&B, &b, sign > 0 ? &q->YplusX : &q->YminusX);
    fe_mul(&C, &p->T, &q->T2d);
    fe_mul(&D, &p->Z, &q->Z2);
    fe_sub(&r->E, &B, &A);
    fe_add(&r->H, &B, &A);
    if (sign > 0) {
        fe_sub(&r->F, &D, &C);
        fe_add(&r->G, &D, &C);
    } else {
        fe_add(&r->F, &D, &C);
        fe_sub(&r->G, &D, &C);
    }
}

/* P + Q or P - Q with Q affine (niels form). */
static void ge_add_niels(ge_p1p1 *r, const ge_p3 *p, const ge_niels *q, int sign) {
    fe A, B, C, D, a, b;
    fe_sub(&a, &p->Y, &p->X);
    fe_add(&b, &p->Y, &p->X);
    fe_mul(&A, &a, sign > 0 ? &q->yminusx : &q->yplusx);
    fe_mul(&B, &b, sign > 0 ? &q->yplusx : &q->yminusx);
    fe_mul(&C, &p->T, &q->xy2d);
    fe_add(&D, &p->Z, &p->Z);
    fe_sub(&r->E, &B, &A);
    fe_add(&r->H, &B, &A);
    if (sign > 0) {
        fe_sub(&r->F, &D, &C);
        fe_add(&r->G, &D, &C);
    } else {
        fe_add(&r->F, &D, &C);
        fe_sub(&r->G, &D, &C);
    }
}

static int p2_is_identity(const ge_p2 *p) {
    return fe_iszero(&p->X) && fe_equal(&p->Y, &p->Z);
}

/* [8]P == identity? */
static int p3_times8_is_identity(const ge_p3 *p) {
    ge_p1p1 t;
    ge_p2 q;
    ge_p3_dbl(&t, p);
    p1p1_to_p2(&q, &t);
    ge_dbl(&t, &q);
    p1p1_to_p2(&q, &t);
    ge_dbl(&t, &q);
    p1p1_to_p2(&q, &t);
    return p2_is_identity(&q);
}

static void p2_tobytes(uint8_t s[32], const ge_p2 *p) {
    fe zi, x, y;
    fe_invert(&zi, &p->Z);
    fe_mul(&x, &p->X, &zi);
    fe_mul(&y, &p->Y, &zi);
    fe_tobytes(s, &y);
    s[31] ^= (uint8_t)(fe_isodd(&x) << 7);
}

/* y < p for the low 255 bits of s. */
static int y_is_canonical(const uint8_t s[32]) {
    if ((s[31] & 0x7f) != 0x7f) return 1;
    for (int i = 30; i >= 1; i--)
        if (s[i] != 0xff) return 1;
    return s[0] < 0xed;
}

/* The y of every small-order point (with either sign of x), canonical encodings. */
static const uint8_t SMALL_ORDER_Y[5][32] = {
    {0},                                                   /* y = 0: order 4 */
    {1},                                                   /* y = 1: the identity */
    {0xec, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
     0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f},
    {0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67, 0x0f,
     0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac, 0x03, 0x7a},
    {0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef, 0x98, 0xf0,
     0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53, 0xfc, 0x05},
};

/* Canonical encoding of a small-order point? (Only meaningful after y_is_canonical.) */
static int is_small_order_encoding(const uint8_t s[32]) {
    uint8_t y[32];
    memcpy(y, s, 32);
    y[31] &= 0x7f;
    for (int k = 0; k < 5; k++)
        if (memcmp(y, SMALL_ORDER_Y[k], 32) == 0) return 1;
    return 0;
}

/* RFC 8032 5.1.3 decoding, canonical only; the point is negated when `negate`. */
static int ge_decode(ge_p3 *r, const uint8_t s[32], int negate) {
    if (!y_is_canonical(s)) return 0;
    int sign = s[31] >> 7;
    fe u, v, v3, vxx, check, t;
    fe_frombytes(&r->Y, s);
    r->Z = FE_ONE;
    fe_sq(&u, &r->Y);
    fe_mul(&v, &u, &FE_D);
    fe_sub(&u, &u, &r->Z);     /* u = y^2 - 1 */
    fe_add(&v, &v, &r->Z);     /* v = d y^2 + 1 */
    fe_sq(&v3, &v);
    fe_mul(&v3, &v3, &v);      /* v^3 */
    fe_sq(&t, &v3);
    fe_mul(&t, &t, &v);
    fe_mul(&t, &t, &u);        /* u v^7 */
    fe_pow22523(&t, &t);
    fe_mul(&t, &t, &v3);
    fe_mul(&r->X, &t, &u);     /* x = u v^3 (u v^7)^((p-5)/8) */
    fe_sq(&vxx, &r->X);
    fe_mul(&vxx, &vxx, &v);
    fe_sub(&check, &vxx, &u);
    if (!fe_iszero(&check)) {
        fe_add(&check, &vxx, &u);
        if (!fe_iszero(&check)) return 0;          /* not a square: not on the curve */
        fe_mul(&r->X, &r->X, &FE_SQRTM1);
    }
    if (fe_iszero(&r->X) && sign) return 0;        /* x = 0 with the sign bit set */
    if (fe_isodd(&r->X) != sign) fe_neg(&r->X, &r->X);
    if (negate) fe_neg(&r->X, &r->X);
    fe_mul(&r->T, &r->X, &r->Y);
    return 1;
}

/* ---- scalars mod L ------------------------------------------------------------------------- */
static const uint64_t L64[4] = {0x5812631a5cf5d3edULL, 0x14def9dea2f79cd6ULL, 0, 0x1000000000000000ULL};
static const uint64_t MU64[5] = {0xed9ce5a30a2c131bULL, 0x2106215d086329a7ULL, 0xffffffffffffffebULL,
                                 0xffffffffffffffffULL, 0xfULL};

static void mp_mul(uint64_t *out, const uint64_t *a, int na, const uint64_t *b, int nb) {
    memset(out, 0, sizeof(uint64_t) * (size_t)(na + nb));
    for (int i = 0; i < na; i++) {
        uint64_t carry = 0;
        for (int j = 0; j < nb; j++) {
            u128 t = (u128)a[i] * b[j] + out[i + j] + carry;
            out[i + j] = (uint64_t)t;
            carry = (uint64_t)(t >> 64);
        }
        out[i + nb] = carry;
    }
}

static int geq_L(const uint64_t r[4]) {
    for (int i = 3; i >= 0; i--) {
        if (r[i] != L64[i]) return r[i] > L64[i];
    }
    return 1;
}

static void sub_L(uint64_t r[5]) {
    uint64_t borrow = 0;
    for (int i = 0; i < 5; i++) {
        uint64_t l = i < 4 ? L64[i] : 0;
        u128 t = (u128)r[i] - l - borrow;
        r[i] = (uint64_t)t;
        borrow = (uint64_t)(t >> 64) & 1;
    }
}

/* x (8 limbs, < 2^512) mod L into 4 limbs: Barrett reduction (HAC 14.42, b = 2^64, k = 4). */
static void sc_reduce_limbs(uint64_t out[4], const uint64_t x[8]) {
    uint64_t q2[10], r2[9], r[5];
    mp_mul(q2, x + 3, 5, MU64, 5);              /* q1 * mu, q1 = x >> 192 */
    mp_mul(r2, q2 + 5, 5, L64, 4);               /* q3 * L, q3 = q2 >> 320 */
    uint64_t borrow = 0;
    for (int i = 0; i < 5; i++) {                /* r = (x - q3 L) mod 2^320 */
        u128 t = (u128)x[i] - r2[i] - borrow;
        r[i] = (uint64_t)t;
        borrow = (uint64_t)(t >> 64) & 1;
    }
    while (r[4] || geq_L(r)) sub_L(r);
    memcpy(out, r, 32);
}

static void sc_from_bytes64(uint64_t out[4], const uint8_t in[64]) {
    uint64_t x[8];
    for (int i = 0; i < 8; i++) x[i] = load64(in + 8 * i);
    sc_reduce_limbs(out, x);
}

static void sc_load32(uint64_t out[4], const uint8_t in[32]) {
    for (int i = 0; i < 4; i++) out[i] = load64(in + 8 * i);
}

static int sc_is_canonical(const uint8_t s[32]) {
    uint64_t r[4];
    sc_load32(r, s);
    return !geq_L(r);
}

static void sc_mul(uint64_t out[4], const uint64_t a[4], const uint64_t b[4]) {
    uint64_t x[8];
    mp_mul(x, a, 4, b, 4);
    sc_reduce_limbs(out, x);
}

static void sc_add(uint64_t out[4], const uint64_t a[4], const uint64_t b[4]) {
    uint64_t r[5];
    uint64_t carry = 0;
    for (int i = 0; i < 4; i++) {
        u128 t = (u128)a[i] + b[i] + carry;
        r[i] = (uint64_t)t;
        carry = (uint64_t)(t >> 64);
    }
    r[4] = carry;
    while (r[4] || geq_L(r)) sub_L(r);
    memcpy(out, r, 32);
}

/* Width-w NAF of a scalar < 2^253 (4 limbs): odd digits in (-2^(w-1), 2^(w-1)). */
static void wnaf(int8_t naf[256], const uint64_t k[4], int w) {
    uint64_t x[5] = {k[0], k[1], k[2], k[3], 0};
    uint64_t width = 1ULL << w, mask = width - 1;
    uint64_t carry = 0;
    memset(naf, 0, 256);
    int pos = 0;
    while (pos < 256) {
        int idx = pos / 64, bit = pos % 64;
        uint64_t buf = x[idx] >> bit;
        if (bit + w > 64 && idx + 1 < 5) buf |= x[idx + 1] << (64 - bit);
        uint64_t window = carry + (buf & mask);
        if ((window & 1) == 0) {
            pos += 1;
            continue;
        }
        if (window < width / 2) {
            carry = 0;
            naf[pos] = (int8_t)window;
        } else {
            carry = 1;
            naf[pos] = (int8_t)((int64_t)window - (int64_t)width);
        }
        pos += w;
    }
}

/* ---- the base point table ------------------------------------------------------------------ */
#define B_WINDOW 8
#define B_TABLE (1 << (B_WINDOW - 2)) /* odd multiples 1, 3, ..., 2^(w-1) - 1 */
static ge_niels BASE_ODD[B_TABLE];
static pthread_once_t base_once = PTHREAD_ONCE_INIT;

static void niels_from_p3(ge_niels *r, const ge_p3 *p) {
    fe zi, x, y;
    fe_invert(&zi, &p->Z);
    fe_mul(&x, &p->X, &zi);
    fe_mul(&y, &p->Y, &zi);
    fe_add(&r->yplusx, &y, &x);
    fe_sub(&r->yminusx, &y, &x);
    fe_mul(&r->xy2d, &x, &y);
    fe_mul(&r->xy2d, &r->xy2d, &FE_D2);
}

static void base_init(void) {
    ge_p3 b, b2, cur;
    ge_p1p1 t;
    ge_cached b2c;
    b.X = FE_BX; b.Y = FE_BY; b.Z = FE_ONE;
    fe_mul(&b.T, &FE_BX, &FE_BY);
    ge_p3_dbl(&t, &b);
    p1p1_to_p3(&b2, &t);
    p3_to_cached(&b2c, &b2);
    cur = b;
    for (int i = 0; i < B_TABLE; i++) {
        niels_from_p3(&BASE_ODD[i], &cur);
        ge_add_cached(&t, &cur, &b2c, 1);
        p1p1_to_p3(&cur, &t);
    }
}

/* Odd multiples P, 3P, ..., 15P (width-5 NAF digits) in cached form. */
#define P_WINDOW 5
#define P_TABLE (1 << (P_WINDOW - 2))
static void odd_multiples(ge_cached table[P_TABLE], const ge_p3 *p) {
    ge_p1p1 t;
    ge_p3 p2, cur;
    ge_cached p2c;
    ge_p3_dbl(&t, p);
    p1p1_to_p3(&p2, &t);
    p3_to_cached(&p2c, &p2);
    p3_to_cached(&table[0], p);
    cur = *p;
    for (int i = 1; i < P_TABLE; i++) {
        ge_add_cached(&t, &cur, &p2c, 1);
        p1p1_to_p3(&cur, &t);
        p3_to_cached(&table[i], &cur);
    }
}

/* r = sum [scalars_i] points_i + [b] B (Straus, interleaved NAFs, shared doublings). */
static void multiscalar(ge_p3 *r, size_t m, const ge_cached (*tables)[P_TABLE], int8_t (*nafs)[256],
                        const int8_t bnaf[256]) {
    int top = 255;
    for (; top >= 0; top--) {
        int any = bnaf[top] != 0;
        for (size_t j = 0; j < m && !any; j++) any = nafs[j][top] != 0;
        if (any) break;
    }
    ge_p3 acc;
    p3_identity(&acc);
    ge_p1p1 t;
    ge_p2 q = {acc.X, acc.Y, acc.Z};
    for (int i = top; i >= 0; i--) {
        ge_dbl(&t, &q);
        int adds = bnaf[i] != 0;
        for (size_t j = 0; j < m && !adds; j++) adds = nafs[j][i] != 0;
        if (!adds && i > 0) { /* another doubling follows: T is not needed */
            p1p1_to_p2(&q, &t);
            continue;
        }
        p1p1_to_p3(&acc, &t);
        for (size_t j = 0; j < m; j++) {
            int d = nafs[j][i];
            if (d) {
                ge_add_cached(&t, &acc, &tables[j][(d > 0 ? d : -d) / 2], d > 0 ? 1 : -1);
                p1p1_to_p3(&acc, &t);
            }
        }
        int d = bnaf[i];
        if (d) {
            ge_add_niels(&t, &acc, &BASE_ODD[(d > 0 ? d : -d) / 2], d > 0 ? 1 : -1);
            p1p1_to_p3(&acc, &t);
        }
        q.X = acc.X; q.Y = acc.Y; q.Z = acc.Z;
    }
    *r = acc;
}

/* ---- single verification ------------------------------------------------------------------- */
typedef struct {
    ge_p3 negA, negR;
    uint64_t k[4], s[4];
    const uint8_t *R;
    int r_decoded;
} prepared;

/* Rules 1-4 and k; R is decoded only when `decode_r` (batches always need it). */
static int prepare(prepared *p, const uint8_t pk[32], const uint8_t *msg, size_t len,
                   const uint8_t sig[64], int decode_r) {
    const uint8_t *R = sig, *S = sig + 32;
    if (!sc_is_canonical(S)) return 0;
    if (!y_is_canonical(R) || is_small_order_encoding(R)) return 0;
    if (!ge_decode(&p->negA, pk, 1) || is_small_order_encoding(pk)) return 0;
    p->r_decoded = 0;
    if (decode_r) {
        if (!ge_decode(&p->negR, R, 1)) return 0;
        p->r_decoded = 1;
    }
    sha512_ctx h;
    uint8_t digest[64];
    sha512_init(&h);
    sha512_update(&h, R, 32);
    sha512_update(&h, pk, 32);
    sha512_update(&h, msg, len);
    sha512_final(&h, digest);
    sc_from_bytes64(p->k, digest);
    sc_load32(p->s, S);
    p->R = R;
    return 1;
}

/* The cofactored equation for one prepared signature. */
static int check_one(prepared *p) {
    pthread_once(&base_once, base_init);
    ge_cached table[1][P_TABLE];
    int8_t naf[1][256], bnaf[256];
    odd_multiples(table[0], &p->negA);
    wnaf(naf[0], p->k, P_WINDOW);
    wnaf(bnaf, p->s, B_WINDOW);
    ge_p3 P;
    multiscalar(&P, 1, (const ge_cached (*)[P_TABLE])table, naf, bnaf); /* [S]B - [k]A */
    ge_p2 P2 = {P.X, P.Y, P.Z};
    uint8_t enc[32];
    p2_tobytes(enc, &P2);
    if (memcmp(enc, p->R, 32) == 0) return 1; /* P = R: the cofactored equation holds */
    if (!p->r_decoded) {
        if (!ge_decode(&p->negR, p->R, 1)) return 0;
        p->r_decoded = 1;
    }
    ge_cached negRc;
    ge_p1p1 t;
    ge_p3 diff;
    p3_to_cached(&negRc, &p->negR);
    ge_add_cached(&t, &P, &negRc, 1);             /* P - R */
    p1p1_to_p3(&diff, &t);
    return p3_times8_is_identity(&diff);
}

int p2pd_ed25519_verify(const uint8_t *pk, const uint8_t *msg, size_t len, const uint8_t *sig) {
    prepared p;
    if (!prepare(&p, pk, msg, len, sig, 0)) return 0;
    return check_one(&p);
}

/* ---- batches ------------------------------------------------------------------------------- */
static int random_bytes(uint8_t *out, size_t len) {
#if defined(__linux__)
    while (len) {
        ssize_t n = getrandom(out, len, 0);
        if (n < 0) {
            if (errno == EINTR) continue;
            break;
        }
        out += n;
        len -= (size_t)n;
    }
    if (!len) return 1;
#endif
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    while (len) {
        ssize_t n = read(fd, out, len);
        if (n <= 0) {
            if (n < 0 && errno == EINTR) continue;
            close(fd);
            return 0;
        }
        out += n;
        len -= (size_t)n;
    }
    close(fd);
    return 1;
}

/* The random linear combination over items[0..m): 1 if it holds (then every one is valid,
 * but for a chance of 2^-128), 0 if not or if memory or randomness ran out. */
static int check_combined(prepared *const *items, size_t m) {
    pthread_once(&base_once, base_init);
    size_t points = 2 * m;
    ge_cached (*tables)[P_TABLE] = malloc(points * sizeof *tables);
    int8_t (*nafs)[256] = malloc(points * sizeof *nafs);
    uint8_t *z = malloc(16 * m);
    int ok = 0;
    if (!tables || !nafs || !z || !random_bytes(z, 16 * m)) goto done;
    uint64_t bsum[4] = {0, 0, 0, 0};
    for (size_t i = 0; i < m; i++) {
        uint64_t zi[4] = {load64(z + 16 * i), load64(z + 16 * i + 8), 0, 0};
        uint64_t zk[4], zs[4];
        zi[0] |= 1; /* never zero */
        sc_mul(zk, zi, items[i]->k);
        sc_mul(zs, zi, items[i]->s);
        sc_add(bsum, bsum, zs);
        odd_multiples(tables[2 * i], &items[i]->negR);
        wnaf(nafs[2 * i], zi, P_WINDOW);
        odd_multiples(tables[2 * i + 1], &items[i]->negA);
        wnaf(nafs[2 * i + 1], zk, P_WINDOW);
    }
    int8_t bnaf[256];
    wnaf(bnaf, bsum, B_WINDOW);
    ge_p3 P;
    multiscalar(&P, points, (const ge_cached (*)[P_TABLE])tables, nafs, bnaf);
    ok = p3_times8_is_identity(&P);
done:
    free(tables);
    free(nafs);
    free(z);
    return ok;
}

#define BATCH_CHUNK 64

/* Every item's own answer: the combined check, bisected when it fails. */
static void settle(prepared *const *items, size_t m, uint8_t *const *results) {
    if (m == 0) return;
    if (m <= 4) {
        for (size_t i = 0; i < m; i++) *results[i] = (uint8_t)check_one(items[i]);
        return;
    }
    if (check_combined(items, m)) {
        for (size_t i = 0; i < m; i++) *results[i] = 1;
        return;
    }
    size_t half = m / 2;
    settle(items, half, results);
    settle(items + half, m - half, results + half);
}

void p2pd_ed25519_verify_batch(size_t n, const uint8_t *pks, const uint8_t *sigs,
                               const uint8_t *msgs, const uint64_t *lens, uint8_t *results) {
    prepared *prep = malloc((n ? n : 1) * sizeof *prep);
    prepared **items = malloc((n ? n : 1) * sizeof *items);
    uint8_t **outs = malloc((n ? n : 1) * sizeof *outs);
    if (!prep || !items || !outs) { /* no memory for the batch: one by one */
        size_t off = 0;
        for (size_t i = 0; i < n; i++) {
            results[i] = (uint8_t)p2pd_ed25519_verify(pks + 32 * i, msgs + off, (size_t)lens[i],
                                                      sigs + 64 * i);
            off += (size_t)lens[i];
        }
        free(prep);
        free(items);
        free(outs);
        return;
    }
    size_t m = 0, off = 0;
    for (size_t i = 0; i < n; i++) {
        results[i] = 0;
        if (prepare(&prep[i], pks + 32 * i, msgs + off, (size_t)lens[i], sigs + 64 * i, 1)) {
            items[m] = &prep[i];
            outs[m] = &results[i];
            m++;
        }
        off += (size_t)lens[i];
    }
    for (size_t a = 0; a < m; a += BATCH_CHUNK) {
        size_t len = m - a < BATCH_CHUNK ? m - a : BATCH_CHUNK;
        settle(items + a, len, outs + a);
    }
    free(prep);
    free(items);
    free(outs);
}
