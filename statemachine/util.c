/* Small shared pieces: the per-op arena (protobuf-c allocates from it, so
 * decoding a record costs no malloc), key encoding, name validation and
 * record get/put. */
#include <stdlib.h>
#include <string.h>

#include "statemachine/internal.h"

enum { SM_ARENA_ALIGN = 16 };

static void *pb_alloc(void *data, size_t size) {
    return sm_arena_alloc(data, size);
}

static void pb_free(void *data, void *ptr) {
    /* Arena memory is released all at once by sm_arena_reset. */
    (void)data;
    (void)ptr;
}

static sm_arena_chunk *chunk_new(size_t cap) {
    sm_arena_chunk *c = malloc(sizeof *c + cap);
    TB_ASSERT(c != NULL); /* a local fault: the replica cannot continue without memory */
    c->next = NULL;
    c->cap = cap;
    c->used = 0;
    return c;
}

void sm_arena_init(sm_arena *a, size_t chunk_bytes) {
    a->chunk_bytes = chunk_bytes;
    a->head = chunk_new(chunk_bytes);
    a->cur = a->head;
    a->pb = (ProtobufCAllocator){.alloc = pb_alloc, .free = pb_free, .allocator_data = a};
}

void sm_arena_free(sm_arena *a) {
    sm_arena_chunk *c = a->head;
    while (c != NULL) {
        sm_arena_chunk *next = c->next;
        free(c);
        c = next;
    }
    a->head = a->cur = NULL;
}

void sm_arena_reset(sm_arena *a) {
    for (sm_arena_chunk *c = a->head; c != NULL; c = c->next) {
        c->used = 0;
    }
    a->cur = a->head;
}

void *sm_arena_alloc(sm_arena *a, size_t n) {
    n = (n + SM_ARENA_ALIGN - 1) & ~(size_t)(SM_ARENA_ALIGN - 1);
    if (n == 0) {
        n = SM_ARENA_ALIGN;
    }
    while (a->cur->used + n > a->cur->cap) {
        if (a->cur->next == NULL) {
            sm_arena_chunk *c = chunk_new(n > a->chunk_bytes ? n : a->chunk_bytes);
            a->cur->next = c;
        }
        a->cur = a->cur->next;
    }
    void *p = a->cur->data + a->cur->used;
    a->cur->used += n;
    return p;
}

void *sm_arena_dup(sm_arena *a, const void *p, size_t n) {
    void *q = sm_arena_alloc(a, n);
    if (n > 0) {
        memcpy(q, p, n);
    }
    return q;
}

char *sm_arena_strndup(sm_arena *a, const void *p, size_t n) {
    char *q = sm_arena_alloc(a, n + 1);
    if (n > 0) {
        memcpy(q, p, n);
    }
    q[n] = '\0';
    return q;
}

void sm_be32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) {
        p[i] = (uint8_t)(v >> (24 - 8 * i));
    }
}

void sm_be64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) {
        p[i] = (uint8_t)(v >> (56 - 8 * i));
    }
}

uint32_t sm_get_be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

uint64_t sm_get_be64(const uint8_t *p) {
    return (uint64_t)sm_get_be32(p) << 32 | sm_get_be32(p + 4);
}

size_t sm_key2(uint8_t *buf, const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    TB_ASSERT(la + 1 + lb <= SM_KEY_BYTES_MAX);
    memcpy(buf, a, la);
    buf[la] = 0;
    memcpy(buf + la + 1, b, lb);
    return la + 1 + lb;
}

size_t sm_key3(uint8_t *buf, const char *a, const char *b, const char *c, uint32_t n) {
    size_t len = sm_key2(buf, a, b);
    size_t lc = strlen(c);
    TB_ASSERT(len + 1 + lc + 1 + 4 <= SM_KEY_BYTES_MAX);
    buf[len] = 0;
    memcpy(buf + len + 1, c, lc);
    buf[len + 1 + lc] = 0;
    sm_be32(buf + len + 2 + lc, n);
    return len + 2 + lc + 4;
}

static bool printable_name(const char *s, size_t max) {
    if (s == NULL) {
        return false;
    }
    size_t n = 0;
    for (; s[n] != '\0'; n++) {
        if (n >= max || (unsigned char)s[n] < 0x21 || (unsigned char)s[n] > 0x7e) {
            return false;
        }
    }
    return n > 0;
}

bool sm_valid_id(const char *s) {
    return printable_name(s, SM_ID_BYTES_MAX);
}

bool sm_valid_principal(const char *s) {
    return printable_name(s, SM_PRINCIPAL_BYTES_MAX);
}

bool sm_valid_text(const char *s, size_t max) {
    return s != NULL && strnlen(s, max + 1) <= max;
}

int sm_result(sm_ctx *c, int code, int reason, const char *fmt, ...) {
    char buf[SM_TEXT_BYTES_MAX];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    TB_ASSERT(n >= 0);
    c->res->code = code;
    c->res->reason = reason;
    c->res->detail = sm_arena_strndup(c->arena, buf, strlen(buf));
    return 0;
}

int sm_rec_get(sm_ctx *c, int table, const void *key, size_t key_len,
               const ProtobufCMessageDescriptor *desc, void **out) {
    MDB_val v;
    *out = NULL;
    int err = sm_db_get(c->s, c->txn, table, key, key_len, &v);
    if (c->cached && (err == 0 || err == TB_ERR_NOT_FOUND)) {
        sm_read_cache_set(c->s, table, key, key_len, err == 0 ? &v : NULL);
    }
    if (err != 0) {
        return err;
    }
    *out = protobuf_c_message_unpack(desc, &c->arena->pb, v.mv_size, v.mv_data);
    if (*out == NULL) {
        fprintf(stderr, "statemachine: stored %s does not decode\n", desc->name);
        return TB_ERR_IO;
    }
    return 0;
}

int sm_rec_put(sm_ctx *c, int table, const void *key, size_t key_len, const void *msg) {
    const ProtobufCMessage *m = msg;
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = sm_arena_alloc(c->arena, n);
    protobuf_c_message_pack(m, buf);
    return sm_db_put(c->s, c->txn, table, key, key_len, buf, n);
}

int sm_iter_open(sm_store *s, MDB_txn *txn, int table, const void *prefix, size_t len,
                 sm_iter *it) {
    TB_ASSERT(len <= SM_KEY_BYTES_MAX);
    memset(it, 0, sizeof *it);
    memcpy(it->prefix, prefix, len);
    it->prefix_len = len;
    int rc = mdb_cursor_open(txn, s->dbi[table], &it->cur);
    return rc == 0 ? 0 : sm_lmdb_err(rc, "cursor");
}

int sm_iter_seek(sm_iter *it, const void *key, size_t len) {
    it->k = (MDB_val){len, (void *)key};
    int rc = mdb_cursor_get(it->cur, &it->k, &it->v, MDB_SET_RANGE);
    it->started = true;
    it->pending = rc == 0;
    return rc == 0 || rc == MDB_NOTFOUND ? 0 : sm_lmdb_err(rc, "cursor seek");
}

int sm_iter_next(sm_iter *it) {
    int rc = 0;
    if (it->pending) {
        it->pending = false;
    } else if (!it->started) {
        it->started = true;
        it->k = (MDB_val){it->prefix_len, it->prefix};
        rc = it->prefix_len > 0 ? mdb_cursor_get(it->cur, &it->k, &it->v, MDB_SET_RANGE)
                                : mdb_cursor_get(it->cur, &it->k, &it->v, MDB_FIRST);
    } else {
        rc = mdb_cursor_get(it->cur, &it->k, &it->v, MDB_NEXT);
    }
    if (rc == MDB_NOTFOUND) {
        return 0;
    }
    if (rc != 0) {
        return sm_lmdb_err(rc, "cursor next");
    }
    if (it->k.mv_size < it->prefix_len || memcmp(it->k.mv_data, it->prefix, it->prefix_len) != 0) {
        return 0;
    }
    return 1;
}

void sm_iter_close(sm_iter *it) {
    if (it->cur != NULL) {
        mdb_cursor_close(it->cur);
        it->cur = NULL;
    }
}

int sm_db_del_prefix(sm_store *s, MDB_txn *txn, int table, const void *prefix, size_t len) {
    /* Re-seek after each delete: the tracked delete reads and writes the
     * table, which a live cursor would not survive cleanly. */
    for (;;) {
        sm_iter it;
        uint8_t key[SM_KEY_BYTES_MAX];
        size_t klen = 0;
        int err = sm_iter_open(s, txn, table, prefix, len, &it);
        int more = err == 0 ? sm_iter_next(&it) : err;
        if (more == 1) {
            klen = it.k.mv_size;
            memcpy(key, it.k.mv_data, klen);
        }
        sm_iter_close(&it);
        if (more <= 0) {
            return more;
        }
        if ((err = sm_db_del(s, txn, table, key, klen)) != 0) {
            return err;
        }
    }
}
