/* The client link table (see clients.h). */
#include "replica/clients.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/tb_assert.h"
#include "proto/tb_err.h"

typedef struct principal {
    char name[PROTO_NAME_BYTES_MAX];
    size_t n;
    rep_client_link *links[REP_PRINCIPAL_LINKS_MAX];
} principal;

struct rep_clients {
    rep_client_link slots[REP_CLIENT_LINKS_MAX];
    rep_client_link *free_slots[REP_CLIENT_LINKS_MAX];
    size_t n_free;
    principal pool[REP_CLIENT_LINKS_MAX]; /* at most one principal per link */
    principal *free_pool[REP_CLIENT_LINKS_MAX];
    size_t n_free_pool;
    principal *sorted[REP_CLIENT_LINKS_MAX]; /* principals with a link, by name */
    size_t n_sorted;
    size_t n_links;
    uint64_t opened; /* links ever added */
};

int rep_clients_create(rep_clients **out) {
    rep_clients *c = calloc(1, sizeof *c);
    if (c == NULL) {
        return TB_ERR_NOMEM;
    }
    for (size_t i = 0; i < REP_CLIENT_LINKS_MAX; i++) {
        c->free_slots[i] = &c->slots[REP_CLIENT_LINKS_MAX - 1 - i];
        c->free_pool[i] = &c->pool[REP_CLIENT_LINKS_MAX - 1 - i];
    }
    c->n_free = c->n_free_pool = REP_CLIENT_LINKS_MAX;
    *out = c;
    return 0;
}

void rep_clients_free(rep_clients *c) {
    free(c);
}

/* The position of name in sorted (found or where it would go). */
static size_t search(const rep_clients *c, const char *name, bool *found) {
    size_t lo = 0, hi = c->n_sorted;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int r = strcmp(c->sorted[mid]->name, name);
        if (r == 0) {
            *found = true;
            return mid;
        }
        if (r < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    *found = false;
    return lo;
}

static principal *principal_get(rep_clients *c, const char *name) {
    bool found = false;
    size_t i = search(c, name, &found);
    return found ? c->sorted[i] : NULL;
}

int rep_clients_add(rep_clients *c, const char *name, struct tb_tls_link *link,
                    rep_client_link **out) {
    *out = NULL;
    if (strlen(name) >= PROTO_NAME_BYTES_MAX) {
        return TB_ERR_INVALID;
    }
    bool found = false;
    size_t at = search(c, name, &found);
    principal *p = found ? c->sorted[at] : NULL;
    if (c->n_free == 0 || (p != NULL && p->n == REP_PRINCIPAL_LINKS_MAX)) {
        return TB_ERR_TOO_LARGE;
    }
    if (p == NULL) {
        TB_ASSERT(c->n_free_pool > 0); /* no more principals than links */
        p = c->free_pool[--c->n_free_pool];
        snprintf(p->name, sizeof p->name, "%s", name);
        p->n = 0;
        memmove(&c->sorted[at + 1], &c->sorted[at], (c->n_sorted - at) * sizeof *c->sorted);
        c->sorted[at] = p;
        c->n_sorted++;
    }
    rep_client_link *l = c->free_slots[--c->n_free];
    *l = (rep_client_link){.link = link, .principal = p->name, .opened = ++c->opened};
    p->links[p->n++] = l;
    c->n_links++;
    *out = l;
    return 0;
}

bool rep_clients_remove(rep_clients *c, const struct tb_tls_link *link) {
    for (size_t i = 0; i < c->n_sorted; i++) {
        principal *p = c->sorted[i];
        for (size_t k = 0; k < p->n; k++) {
            if (p->links[k]->link != link) {
                continue;
            }
            p->links[k]->link = NULL;
            c->free_slots[c->n_free++] = p->links[k];
            p->links[k] = p->links[--p->n];
            c->n_links--;
            if (p->n == 0) {
                memmove(&c->sorted[i], &c->sorted[i + 1],
                        (c->n_sorted - i - 1) * sizeof *c->sorted);
                c->n_sorted--;
                c->free_pool[c->n_free_pool++] = p;
            }
            return true;
        }
    }
    return false;
}

size_t rep_clients_of(rep_clients *c, const char *name,
                      rep_client_link *out[REP_PRINCIPAL_LINKS_MAX]) {
    principal *p = principal_get(c, name);
    if (p == NULL) {
        return 0;
    }
    memcpy(out, p->links, p->n * sizeof *out);
    return p->n;
}

rep_client_link *rep_clients_find(rep_clients *c, const char *name,
                                  const struct tb_tls_link *link) {
    principal *p = principal_get(c, name);
    for (size_t k = 0; p != NULL && k < p->n; k++) {
        if (p->links[k]->link == link) {
            return p->links[k];
        }
    }
    return NULL;
}

size_t rep_clients_count(const rep_clients *c) {
    return c->n_links;
}

rep_client_link *rep_clients_victim(rep_clients *c, const char *name) {
    rep_client_link *links[REP_PRINCIPAL_LINKS_MAX];
    size_t n = rep_clients_of(c, name, links);
    if (n < REP_PRINCIPAL_LINKS_MAX) {
        return NULL;
    }
    rep_client_link *best = NULL;
    for (size_t i = 0; i < n; i++) {
        rep_client_link *l = links[i];
        if (best == NULL || (best->subscribed && !l->subscribed) ||
            (best->subscribed == l->subscribed && l->opened < best->opened)) {
            best = l;
        }
    }
    return best;
}

size_t rep_clients_subscribed(rep_clients *c, struct tb_tls_link **out, size_t cap) {
    size_t n = 0;
    for (size_t i = 0; i < c->n_sorted; i++) {
        const principal *p = c->sorted[i];
        for (size_t k = 0; k < p->n && n < cap; k++) {
            if (p->links[k]->subscribed) {
                out[n++] = p->links[k]->link;
            }
        }
    }
    return n;
}

size_t rep_clients_links(rep_clients *c, struct tb_tls_link **out, size_t cap) {
    size_t n = 0;
    for (size_t i = 0; i < c->n_sorted; i++) {
        const principal *p = c->sorted[i];
        for (size_t k = 0; k < p->n && n < cap; k++) {
            out[n++] = p->links[k]->link;
        }
    }
    return n;
}
