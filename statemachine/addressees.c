/* Who a result is for: the principals that receive it as a command
 * (subscriptions, replica/daemon.c). Pure: it reads the packed result alone. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "statemachine/internal.h"

typedef struct addr_set {
    sm_principal *out;
    size_t n;
    bool full;
} addr_set;

static void add(addr_set *a, const char *name) {
    if (name == NULL || !sm_valid_principal(name)) {
        return; /* a pending placement has no agent */
    }
    for (size_t i = 0; i < a->n; i++) {
        if (strcmp(a->out[i], name) == 0) {
            return;
        }
    }
    if (a->n == SM_RESULT_ADDRESSEES_MAX) {
        a->full = true;
        return;
    }
    snprintf(a->out[a->n++], sizeof a->out[0], "%s", name);
}

static void add_changes(addr_set *a, Twinbft__SmPlacementChange *const *ch, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (ch[i]->placement != NULL) {
            add(a, ch[i]->placement->agent);
        }
    }
}

static int cmp_names(const void *x, const void *y) {
    return strcmp(*(const sm_principal *)x, *(const sm_principal *)y);
}

int sm_result_addressees(const uint8_t *result, size_t len,
                         sm_principal out[SM_RESULT_ADDRESSEES_MAX], size_t *n) {
    *n = 0;
    Twinbft__SmResult *r =
        len <= SM_RESULT_BYTES_MAX ? twinbft__sm_result__unpack(NULL, len, result) : NULL;
    if (r == NULL) {
        return TB_ERR_INVALID;
    }
    addr_set a = {.out = out};
    if (r->payload_case == TWINBFT__SM_RESULT__PAYLOAD_COMMAND && (int)r->code == SM_OK) {
        add(&a, r->command->to);
    } else if (r->payload_case == TWINBFT__SM_RESULT__PAYLOAD_PLACEMENT) {
        add_changes(&a, r->placement->added, r->placement->n_added);
        add_changes(&a, r->placement->removed, r->placement->n_removed);
    }
    twinbft__sm_result__free_unpacked(r, NULL);
    qsort(out, a.n, sizeof out[0], cmp_names);
    *n = a.n;
    return a.full ? TB_ERR_TOO_LARGE : 0;
}
