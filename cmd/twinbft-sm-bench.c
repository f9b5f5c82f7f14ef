/* twinbft-sm-bench: loads N twins into a fresh state machine store, then
 * measures apply throughput of simple operations, the digest cost per
 * 1,000 changed keys, and the snapshot size. Prints one line:
 *
 *   twins=N apply_ops_per_s=X digest_us_per_1k_changes=Y snapshot_mb=Z export_s=E import_s=I
 *
 * Workload. Load: a twin hierarchy (site > line > machine > component,
 * fan-out 10) created by an operator, 256 ops per batch, one commit per
 * batch. Measure: --ops simple ops (default 200,000), half shadow reports
 * by a twin owner on pseudo-randomly chosen twins, half config puts by an
 * operator over 10,000 keys, 256 ops per batch, one commit per batch; the
 * ops are encoded before the clock starts (encoding is the client's work).
 * apply_ops_per_s counts everything the replica does for them on one
 * core: decoding, authorisation, the writes, the events, the digest and
 * the commit. digest_us_per_1k_changes is the time spent folding changed
 * keys into the lattice hash (sm_flush), per 1,000 changed keys.
 *
 * The store is opened with MDB_NOSYNC: this measures the state machine,
 * not the disk (a replica fsyncs one group commit per ready).
 *
 *   twinbft-sm-bench [--twins N] [--ops M] [--dir DIR] [--keep] */
#define _XOPEN_SOURCE 700
#include <errno.h>
#include <ftw.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "proto/tb_err.h"
#include "statemachine/sm.h"

enum {
    BENCH_BATCH_OPS = 256,
    BENCH_FANOUT = 10,
    BENCH_DEPTH = 4,
    BENCH_NODES = 16,
    BENCH_CONFIG_KEYS = 10000,
    BENCH_OP_BYTES_MAX = 256,
    BENCH_ID_BYTES = 32,
};

static const size_t bench_map_bytes = (size_t)64 << 30; /* virtual; the file grows as used */
static const char admin[] = "admin";
static const char operator_name[] = "operator";
static const char owner_name[] = "owner";

typedef struct bench {
    sm_store *s;
    MDB_txn *txn;
    uint64_t seq;
    uint32_t index;
    uint64_t time_ms;
    uint64_t denied;
} bench;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void die(const char *what, int err) {
    fprintf(stderr, "twinbft-sm-bench: %s: %s\n", what, tb_strerror(err));
    exit(1);
}

/* Ends the current batch: commit, next seq. */
static void batch_end(bench *b) {
    if (b->txn != NULL) {
        int err = sm_txn_commit(b->s, b->txn);
        if (err != 0) {
            die("commit", err);
        }
        b->txn = NULL;
    }
    b->seq++;
    b->index = 0;
    b->time_ms += 10;
}

static void apply_packed(bench *b, const char *principal, const uint8_t *op, size_t len) {
    if (b->txn == NULL) {
        int err = sm_txn_begin(b->s, &b->txn);
        if (err != 0) {
            die("begin", err);
        }
    }
    sm_output out;
    int err = sm_apply(b->s, b->txn, b->seq, b->index++, b->time_ms, principal, op, len, &out);
    if (err != 0) {
        die("apply", err);
    }
    if (out.code != SM_OK) {
        b->denied++;
    }
    if (b->index == BENCH_BATCH_OPS) {
        batch_end(b);
    }
}

static void apply_op(bench *b, const char *principal, const Twinbft__SmOp *op) {
    uint8_t buf[BENCH_OP_BYTES_MAX];
    size_t n = twinbft__sm_op__get_packed_size(op);
    if (n > sizeof buf) {
        die("op too large", TB_ERR_TOO_LARGE);
    }
    twinbft__sm_op__pack(op, buf);
    apply_packed(b, principal, buf, n);
}

static void setup(bench *b) {
    Twinbft__SmOp op = TWINBFT__SM_OP__INIT;
    Twinbft__SmAclGrant g = TWINBFT__SM_ACL_GRANT__INIT;
    op.op_case = TWINBFT__SM_OP__OP_ACL_GRANT;
    op.acl_grant = &g;
    g.principal = (char *)operator_name;
    g.roles = SM_ROLE_OPERATOR;
    apply_op(b, admin, &op);
    g.principal = (char *)owner_name;
    g.roles = SM_ROLE_OWNER;
    apply_op(b, admin, &op);
    Twinbft__SmSitePut sp = TWINBFT__SM_SITE_PUT__INIT;
    sp.id = "site-0";
    sp.name = "bench site";
    op.op_case = TWINBFT__SM_OP__OP_SITE_PUT;
    op.site_put = &sp;
    apply_op(b, admin, &op);
    for (int i = 0; i < BENCH_NODES; i++) {
        char id[BENCH_ID_BYTES];
        snprintf(id, sizeof id, "node-%02d", i);
        Twinbft__SmNodePut np = TWINBFT__SM_NODE_PUT__INIT;
        np.id = id;
        np.tier = i % 2 ? TWINBFT__SM_TIER__SM_TIER_CLOUD : TWINBFT__SM_TIER__SM_TIER_EDGE;
        np.site = "site-0";
        np.cpu_millicores = 64000;
        np.memory_mib = 262144;
        op.op_case = TWINBFT__SM_OP__OP_NODE_PUT;
        op.node_put = &np;
        apply_op(b, admin, &op);
    }
    batch_end(b);
}

/* Twin j of level l is "t<l>-<j>"; its parent is twin j / fan-out one level up. */
static void twin_id(char *buf, int level, uint64_t j) {
    snprintf(buf, BENCH_ID_BYTES, "t%d-%llu", level, (unsigned long long)j);
}

static uint64_t load(bench *b, uint64_t n) {
    uint64_t roots = n / 1111 + 1, done = 0, width = roots;
    for (int level = 0; level < BENCH_DEPTH && done < n; level++, width *= BENCH_FANOUT) {
        for (uint64_t j = 0; j < width && done < n; j++, done++) {
            char id[BENCH_ID_BYTES], parent[BENCH_ID_BYTES];
            Twinbft__SmOp op = TWINBFT__SM_OP__INIT;
            Twinbft__SmTwinCreate tc = TWINBFT__SM_TWIN_CREATE__INIT;
            twin_id(id, level, j);
            tc.id = id;
            tc.kind = (Twinbft__SmTwinKind)(TWINBFT__SM_TWIN_KIND__SM_TWIN_KIND_SITE + level);
            tc.owner = (char *)owner_name;
            if (level == 0) {
                tc.site = "site-0";
            } else {
                twin_id(parent, level - 1, j / BENCH_FANOUT);
                tc.parent = parent;
            }
            op.op_case = TWINBFT__SM_OP__OP_TWIN_CREATE;
            op.twin_create = &tc;
            apply_op(b, operator_name, &op);
        }
    }
    batch_end(b);
    return done;
}

typedef struct encoded {
    uint8_t *bytes; /* all ops back to back */
    size_t *off;    /* op i is bytes[off[i], off[i + 1]) */
    const char **principal;
} encoded;

/* The twin with load index k (level by level, as load() created them). */
static void twin_by_index(uint64_t n, uint64_t k, char *id) {
    uint64_t width = n / 1111 + 1;
    int level = 0;
    while (k >= width && level < BENCH_DEPTH - 1) {
        k -= width;
        width *= BENCH_FANOUT;
        level++;
    }
    twin_id(id, level, k);
}

static void encode_ops(uint64_t twins, size_t m, encoded *e) {
    e->bytes = malloc(m * BENCH_OP_BYTES_MAX);
    e->off = malloc((m + 1) * sizeof *e->off);
    e->principal = malloc(m * sizeof *e->principal);
    if (e->bytes == NULL || e->off == NULL || e->principal == NULL) {
        die("encode", TB_ERR_NOMEM);
    }
    uint64_t x = 88172645463325252ull; /* xorshift: a fixed, reproducible workload */
    size_t at = 0;
    for (size_t i = 0; i < m; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        char id[BENCH_ID_BYTES], key[BENCH_ID_BYTES], val[BENCH_ID_BYTES];
        snprintf(val, sizeof val, "%llu", (unsigned long long)(x % 1000));
        Twinbft__SmOp op = TWINBFT__SM_OP__INIT;
        Twinbft__SmShadowReport rep = TWINBFT__SM_SHADOW_REPORT__INIT;
        Twinbft__SmProperty prop = TWINBFT__SM_PROPERTY__INIT, *props[1] = {&prop};
        Twinbft__SmConfigPut cp = TWINBFT__SM_CONFIG_PUT__INIT;
        if (i % 2 == 0) {
            twin_by_index(twins, (x >> 8) % twins, id);
            prop.name = "temperature";
            prop.value = val;
            rep.twin = id;
            rep.set = props;
            rep.n_set = 1;
            op.op_case = TWINBFT__SM_OP__OP_SHADOW_REPORT;
            op.shadow_report = &rep;
            e->principal[i] = owner_name;
        } else {
            snprintf(key, sizeof key, "cfg/%llu",
                     (unsigned long long)((x >> 8) % BENCH_CONFIG_KEYS));
            cp.key = key;
            cp.value = (ProtobufCBinaryData){strlen(val), (uint8_t *)val};
            op.op_case = TWINBFT__SM_OP__OP_CONFIG_PUT;
            op.config_put = &cp;
            e->principal[i] = operator_name;
        }
        e->off[i] = at;
        at += twinbft__sm_op__pack(&op, e->bytes + at);
    }
    e->off[m] = at;
}

typedef struct measured {
    double apply_s, flush_s;
    uint64_t keys, elements;
} measured;

static void measure(bench *b, const encoded *e, size_t m, measured *r) {
    sm_stats before, after;
    sm_store_stats(b->s, &before);
    double flush = 0, t0 = now_s();
    for (size_t i = 0; i < m; i++) {
        if (b->txn == NULL) {
            int err = sm_txn_begin(b->s, &b->txn);
            if (err != 0) {
                die("begin", err);
            }
        }
        sm_output out;
        int err = sm_apply(b->s, b->txn, b->seq, b->index++, b->time_ms, e->principal[i],
                           e->bytes + e->off[i], e->off[i + 1] - e->off[i], &out);
        if (err != 0) {
            die("apply", err);
        }
        b->denied += out.code != SM_OK;
        if (b->index == BENCH_BATCH_OPS || i + 1 == m) {
            double f0 = now_s();
            if ((err = sm_flush(b->s, b->txn)) != 0) {
                die("flush", err);
            }
            flush += now_s() - f0;
            batch_end(b);
        }
    }
    uint8_t d[PROTO_DIGEST_BYTES];
    double f0 = now_s();
    if (sm_digest(b->s, NULL, d) != 0) {
        die("digest", TB_ERR_IO);
    }
    flush += now_s() - f0;
    r->apply_s = now_s() - t0;
    r->flush_s = flush;
    sm_store_stats(b->s, &after);
    r->keys = after.keys_folded - before.keys_folded;
    r->elements = after.changes_folded - before.changes_folded;
}

static int count_bytes(void *ctx, const void *data, size_t len) {
    (void)data;
    *(uint64_t *)ctx += len;
    return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int parse_u64(const char *s, uint64_t *out) {
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v == 0) {
        return -1;
    }
    *out = v;
    return 0;
}

static void usage(void) {
    fprintf(stderr, "usage: twinbft-sm-bench [--twins N] [--ops M] [--dir DIR] [--keep]\n"
                    "  --dir DIR  keep the store in DIR (made if missing) instead of a\n"
                    "             temporary directory that is removed at the end\n");
    exit(2);
}

typedef struct args {
    uint64_t twins, ops;
    const char *dir; /* NULL: a fresh temporary directory */
    bool keep;
} args;

static args parse_args(int argc, char **argv) {
    args a = {.twins = 10000, .ops = 200000};
    for (int i = 1; i < argc; i++) {
        bool more = i + 1 < argc;
        if (strcmp(argv[i], "--twins") == 0 && more) {
            if (parse_u64(argv[++i], &a.twins) != 0) {
                usage();
            }
        } else if (strcmp(argv[i], "--ops") == 0 && more) {
            if (parse_u64(argv[++i], &a.ops) != 0) {
                usage();
            }
        } else if (strcmp(argv[i], "--dir") == 0 && more) {
            a.dir = argv[++i];
        } else if (strcmp(argv[i], "--keep") == 0) {
            a.keep = true;
        } else {
            usage();
        }
    }
    return a;
}

/* The store's directory: the one given (made if missing), or a fresh one. */
static void make_dir(const args *a, char *dir, size_t cap) {
    const char *tmp = getenv("TMPDIR");
    tmp = tmp && *tmp ? tmp : "/tmp";
    if (a->dir != NULL) {
        snprintf(dir, cap, "%s", a->dir);
        if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
            fprintf(stderr, "twinbft-sm-bench: cannot create %s: %s\n", dir, strerror(errno));
            exit(1);
        }
        return;
    }
    snprintf(dir, cap, "%s/twinbft-sm-bench-XXXXXX", tmp);
    if (mkdtemp(dir) == NULL) {
        fprintf(stderr, "twinbft-sm-bench: cannot create a directory in %s: %s\n", tmp,
                strerror(errno));
        exit(1);
    }
}

int main(int argc, char **argv) {
    args a = parse_args(argc, argv);
    char dir[4096];
    make_dir(&a, dir, sizeof dir);
    sm_options opt = {.admin = admin, .map_bytes = bench_map_bytes, .no_sync = true};
    bench b = {.seq = 1, .time_ms = 1000};
    int err = sm_store_open(dir, &opt, &b.s);
    if (err != 0) {
        die("open", err);
    }
    setup(&b);
    double t0 = now_s();
    uint64_t loaded = load(&b, a.twins);
    double load_s = now_s() - t0;
    encoded e;
    encode_ops(loaded, a.ops, &e);
    measured r;
    measure(&b, &e, a.ops, &r);
    MDB_txn *rtxn = NULL;
    uint64_t snap = 0;
    if (mdb_txn_begin(sm_store_env(b.s), NULL, MDB_RDONLY, &rtxn) != 0 ||
        (err = sm_export(b.s, rtxn, b.seq - 1, count_bytes, &snap)) != 0) {
        die("export", err ? err : TB_ERR_IO);
    }
    /* What state transfer costs at both ends: the export into memory, and
     * its import (every check, then every write) into an empty store. */
    uint8_t *buf = NULL;
    size_t len = 0;
    double t1 = now_s();
    if ((err = sm_export_buf(b.s, rtxn, b.seq - 1, &buf, &len)) != 0) {
        die("export", err);
    }
    double export_s = now_s() - t1;
    mdb_txn_abort(rtxn);
    uint8_t digest[PROTO_DIGEST_BYTES];
    if ((err = sm_digest(b.s, NULL, digest)) != 0) {
        die("digest", err);
    }
    char idir[4200];
    snprintf(idir, sizeof idir, "%s/import", dir);
    if (mkdir(idir, 0700) != 0) {
        die("mkdir", TB_ERR_IO);
    }
    sm_store *is = NULL;
    MDB_txn *itxn = NULL;
    if ((err = sm_store_open(idir, &opt, &is)) != 0 || (err = sm_txn_begin(is, &itxn)) != 0) {
        die("open import store", err);
    }
    double t2 = now_s();
    if ((err = sm_import(is, itxn, b.seq - 1, buf, len, digest)) != 0 ||
        (err = sm_txn_commit(is, itxn)) != 0) {
        die("import", err);
    }
    double import_s = now_s() - t2;
    sm_store_close(is);
    free(buf);
    fprintf(stderr,
            "twinbft-sm-bench: loaded %llu twins in %.1f s (%.0f twins/s); %llu ops, %llu "
            "denied; %llu changed keys, %llu lattice-hash elements folded\n",
            (unsigned long long)loaded, load_s, (double)loaded / load_s, (unsigned long long)a.ops,
            (unsigned long long)b.denied, (unsigned long long)r.keys,
            (unsigned long long)r.elements);
    printf("twins=%llu apply_ops_per_s=%.0f digest_us_per_1k_changes=%.0f snapshot_mb=%.1f "
           "export_s=%.2f import_s=%.2f\n",
           (unsigned long long)loaded, (double)a.ops / r.apply_s,
           r.keys ? r.flush_s * 1e6 / (double)r.keys * 1000 : 0.0, (double)snap / 1e6, export_s,
           import_s);
    sm_store_close(b.s);
    free(e.bytes);
    free(e.off);
    free(e.principal);
    if (!a.keep && a.dir == NULL) {
        nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    }
    return b.denied == 0 ? 0 : 1;
}
