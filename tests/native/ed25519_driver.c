/* Test driver for the sanitizer build: reads "pk sig msg" hex lines on stdin, prints for
 * each line the single-verification answer and, after all lines, the batch answers. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "p2pd_native.h"

static size_t unhex(const char *s, uint8_t *out, size_t max) {
    size_t n = 0;
    while (s[0] && s[1] && s[0] != ' ' && s[0] != '\n' && n < max) {
        unsigned v;
        if (sscanf(s, "%2x", &v) != 1) break;
        out[n++] = (uint8_t)v;
        s += 2;
    }
    return n;
}

int main(void) {
    size_t cap = 1024, n = 0, msg_used = 0, msg_cap = 1 << 20;
    uint8_t *pks = malloc(32 * cap), *sigs = malloc(64 * cap), *msgs = malloc(msg_cap);
    uint64_t *lens = malloc(sizeof(uint64_t) * cap);
    static char line[1 << 16];
    while (fgets(line, sizeof line, stdin)) {
        if (n == cap) {
            cap *= 2;
            pks = realloc(pks, 32 * cap);
            sigs = realloc(sigs, 64 * cap);
            lens = realloc(lens, sizeof(uint64_t) * cap);
        }
        char *sig_hex = strchr(line, ' ');
        if (!sig_hex) continue;
        char *msg_hex = strchr(sig_hex + 1, ' ');
        if (!msg_hex) continue;
        uint8_t msg[1 << 15];
        size_t mlen = unhex(msg_hex + 1, msg, sizeof msg);
        if (unhex(line, pks + 32 * n, 32) != 32 || unhex(sig_hex + 1, sigs + 64 * n, 64) != 64) {
            printf("skip\n");
            continue;
        }
        if (msg_used + mlen > msg_cap) {
            msg_cap = 2 * (msg_used + mlen);
            msgs = realloc(msgs, msg_cap);
        }
        memcpy(msgs + msg_used, msg, mlen);
        msg_used += mlen;
        lens[n] = mlen;
        printf("%d\n", p2pd_ed25519_verify(pks + 32 * n, msg, mlen, sigs + 64 * n));
        n++;
    }
    uint8_t *res = malloc(n ? n : 1);
    p2pd_ed25519_verify_batch(n, pks, sigs, msgs, lens, res);
    printf("batch");
    for (size_t i = 0; i < n; i++) printf(" %d", res[i]);
    printf("\n");
    p2pd_ed25519_verify_batch(0, pks, sigs, msgs, lens, res); /* empty batch */
    free(pks); free(sigs); free(msgs); free(lens); free(res);
    return 0;
}
