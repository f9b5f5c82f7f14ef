/* Memory budgets per identity and in total (see budget.h). */
#include "client/budget.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/pki.h"
#include "proto/tb_assert.h"
#include "proto/tb_err.h"

struct tb_budget_account {
    tb_budget *owner;
    char name[PROTO_NAME_BYTES_MAX];
    size_t holders; /* 0: the slot is free */
    size_t used;
};

struct tb_budget {
    size_t identity_max;
    size_t total_max;
    size_t used;
    size_t n_accounts;
    tb_budget_account *accounts; /* accounts_max slots, allocated once */
};

int tb_budget_new(size_t identity_bytes_max, size_t total_bytes_max, size_t accounts_max,
                  tb_budget **out) {
    *out = NULL;
    if (identity_bytes_max == 0 || accounts_max == 0 || identity_bytes_max > total_bytes_max) {
        return TB_ERR_INVALID;
    }
    tb_budget *b = calloc(1, sizeof *b);
    if (b == NULL) {
        return TB_ERR_NOMEM;
    }
    b->accounts = calloc(accounts_max, sizeof *b->accounts);
    if (b->accounts == NULL) {
        free(b);
        return TB_ERR_NOMEM;
    }
    b->identity_max = identity_bytes_max;
    b->total_max = total_bytes_max;
    b->n_accounts = accounts_max;
    *out = b;
    return 0;
}

void tb_budget_free(tb_budget *b) {
    if (b == NULL) {
        return;
    }
    for (size_t i = 0; i < b->n_accounts; i++) {
        TB_ASSERT(b->accounts[i].holders == 0);
    }
    TB_ASSERT(b->used == 0);
    free(b->accounts);
    free(b);
}

/* Joining happens once per link opened, so a scan of the slots is cheap
 * next to the handshake that precedes it. */
int tb_budget_join(tb_budget *b, const char *name, tb_budget_account **out) {
    tb_budget_account *free_slot = NULL;
    *out = NULL;
    if (name == NULL || strlen(name) >= PROTO_NAME_BYTES_MAX) {
        return TB_ERR_INVALID;
    }
    for (size_t i = 0; i < b->n_accounts; i++) {
        tb_budget_account *a = &b->accounts[i];
        if (a->holders == 0) {
            free_slot = free_slot != NULL ? free_slot : a;
        } else if (strcmp(a->name, name) == 0) {
            a->holders++;
            *out = a;
            return 0;
        }
    }
    if (free_slot == NULL) {
        return TB_ERR_TOO_LARGE;
    }
    TB_ASSERT(free_slot->used == 0);
    free_slot->owner = b;
    snprintf(free_slot->name, sizeof free_slot->name, "%s", name);
    free_slot->holders = 1;
    *out = free_slot;
    return 0;
}

void tb_budget_leave(tb_budget_account *a) {
    TB_ASSERT(a->holders > 0);
    a->holders--;
    if (a->holders == 0) {
        TB_ASSERT(a->used == 0);
        a->name[0] = '\0';
    }
}

bool tb_budget_take(tb_budget_account *a, size_t bytes) {
    tb_budget *b = a->owner;
    TB_ASSERT(a->holders > 0 && a->used <= b->identity_max && b->used <= b->total_max);
    if (bytes > b->identity_max - a->used || bytes > b->total_max - b->used) {
        return false;
    }
    a->used += bytes;
    b->used += bytes;
    return true;
}

void tb_budget_put(tb_budget_account *a, size_t bytes) {
    tb_budget *b = a->owner;
    TB_ASSERT(bytes <= a->used && bytes <= b->used);
    a->used -= bytes;
    b->used -= bytes;
}

size_t tb_budget_used(const tb_budget *b) {
    return b->used;
}

size_t tb_budget_account_used(const tb_budget_account *a) {
    return a->used;
}

const tb_budget *tb_budget_of(const tb_budget_account *a) {
    return a->owner;
}

size_t tb_budget_identity_max(const tb_budget *b) {
    return b->identity_max;
}

size_t tb_budget_total_max(const tb_budget *b) {
    return b->total_max;
}
