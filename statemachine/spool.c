/* State transfer spooled to disk (sm_adapter.h, sm_adapter_spool).
 *
 * Exports. The first peer that asks for checkpoint seq's manifest starts
 * the export: the kept read transaction of seq moves from the adapter to a
 * job that writes sm_export's bytes to "export-SEQ.tmp" in the spool
 * directory, hashing each chunk as it goes, then renames the file to
 * "export-SEQ.tbs" and writes the chunk hashes beside it
 * ("export-SEQ.sum"). With background set the job runs on a thread of its
 * own, so a replica keeps ordering while it exports hundreds of megabytes;
 * the manifest is TB_ERR_AGAIN until the job is done, and the core asks
 * again. The last two exports stay (a transfer that began on the older one
 * can finish); one that is made evicts the oldest. The .tbs and .sum files
 * survive a restart, so a restarted replica can serve its stable
 * checkpoint at once when it was exported before.
 *
 * Imports. Chunks are written where they belong in "import.part" (already
 * checked by the core, in any order); finish maps the file and imports it
 * with sm_import, which checks the whole against the certified digest.
 *
 * Memory: one chunk buffer for the export job, nothing per chunk served
 * (pread into the core's buffer), the mapped import while it is installed. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "statemachine/internal.h"
#include "statemachine/sm_adapter.h"

enum { SPOOL_PATH_BYTES = 4096 + 64, SPOOL_READY = 2 };

typedef struct sm_export_file {
    uint64_t seq; /* 0: none */
    uint32_t chunk_bytes;
    int fd;
    uint64_t total;
    uint8_t (*hashes)[PROTO_DIGEST_BYTES];
    size_t n;
} sm_export_file;

typedef struct sm_export_job {
    sm_spool *sp;
    pthread_t thread;
    bool running; /* a job exists (maybe done) */
    bool threaded;
    atomic_bool done;
    MDB_txn *rtxn;
    int rc;
    sm_export_file out;
    uint8_t *chunk; /* chunk_bytes being filled */
    size_t fill;
    size_t cap_hashes;
} sm_export_job;

struct sm_spool {
    sm_store *s;
    char dir[4096];
    bool background;
    sm_export_file ready[SPOOL_READY];
    sm_export_job job;
    int import_fd;
    uint64_t import_seq, import_total;
};

static void spool_path(const sm_spool *sp, char *out, const char *name, uint64_t seq,
                       const char *ext) {
    if (seq != 0) {
        snprintf(out, SPOOL_PATH_BYTES, "%s/%s-%020" PRIu64 ".%s", sp->dir, name, seq, ext);
    } else {
        snprintf(out, SPOOL_PATH_BYTES, "%s/%s.%s", sp->dir, name, ext);
    }
}

static int write_all(int fd, const void *p, size_t len, uint64_t off) {
    const uint8_t *b = p;
    while (len > 0) {
        ssize_t w = pwrite(fd, b, len, (off_t)off);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            return TB_ERR_IO;
        }
        b += w;
        len -= (size_t)w;
        off += (uint64_t)w;
    }
    return 0;
}

static int read_all(int fd, void *p, size_t len, uint64_t off) {
    uint8_t *b = p;
    while (len > 0) {
        ssize_t r = pread(fd, b, len, (off_t)off);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            return TB_ERR_IO;
        }
        b += r;
        len -= (size_t)r;
        off += (uint64_t)r;
    }
    return 0;
}

static void file_close(sm_export_file *f) {
    if (f->seq != 0 && f->fd >= 0) {
        close(f->fd);
    }
    free(f->hashes);
    memset(f, 0, sizeof *f);
    f->fd = -1;
}

/* Closes and deletes an export's files. */
static void file_remove(sm_spool *sp, sm_export_file *f) {
    if (f->seq != 0) {
        char p[SPOOL_PATH_BYTES];
        spool_path(sp, p, "export", f->seq, "tbs");
        unlink(p);
        spool_path(sp, p, "export", f->seq, "sum");
        unlink(p);
    }
    file_close(f);
}

/* ---- the export job --------------------------------------------------- */

static int job_hash_chunk(sm_export_job *j) {
    if (j->out.n == j->cap_hashes) {
        size_t cap = j->cap_hashes ? 2 * j->cap_hashes : 64;
        void *h = realloc(j->out.hashes, cap * PROTO_DIGEST_BYTES);
        if (h == NULL) {
            return TB_ERR_NOMEM;
        }
        j->out.hashes = h;
        j->cap_hashes = cap;
    }
    proto_sha256(j->chunk, j->fill, j->out.hashes[j->out.n++]);
    int rc = write_all(j->out.fd, j->chunk, j->fill, j->out.total);
    j->out.total += j->fill;
    j->fill = 0;
    return rc;
}

static int job_write(void *ctx, const void *data, size_t len) {
    sm_export_job *j = ctx;
    const uint8_t *p = data;
    while (len > 0) {
        size_t n = j->out.chunk_bytes - j->fill;
        n = n < len ? n : len;
        memcpy(j->chunk + j->fill, p, n);
        j->fill += n;
        p += n;
        len -= n;
        if (j->fill == j->out.chunk_bytes) {
            int rc = job_hash_chunk(j);
            if (rc != 0) {
                return rc;
            }
        }
    }
    return 0;
}

static void *job_run(void *arg) {
    sm_export_job *j = arg;
    sm_spool *sp = j->sp;
    int rc = sm_export(sp->s, j->rtxn, j->out.seq, job_write, j);
    if (rc == 0 && j->fill > 0) {
        rc = job_hash_chunk(j);
    }
    char tmp[SPOOL_PATH_BYTES], tbs[SPOOL_PATH_BYTES], sum[SPOOL_PATH_BYTES];
    spool_path(sp, tmp, "export", j->out.seq, "tmp");
    spool_path(sp, tbs, "export", j->out.seq, "tbs");
    spool_path(sp, sum, "export", j->out.seq, "sum");
    if (rc == 0) {
        /* The hashes beside the export, for a restart: the chunk size
         * first, then the hashes. */
        int fd = open(sum, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0600);
        uint8_t cb[4] = {(uint8_t)(j->out.chunk_bytes >> 24), (uint8_t)(j->out.chunk_bytes >> 16),
                         (uint8_t)(j->out.chunk_bytes >> 8), (uint8_t)j->out.chunk_bytes};
        rc = fd < 0 ? TB_ERR_IO : write_all(fd, cb, sizeof cb, 0);
        rc = rc ? rc : write_all(fd, j->out.hashes, j->out.n * PROTO_DIGEST_BYTES, sizeof cb);
        if (fd >= 0) {
            close(fd);
        }
    }
    if (rc == 0 && rename(tmp, tbs) != 0) {
        rc = TB_ERR_IO;
    }
    if (rc != 0) {
        unlink(tmp);
        unlink(sum);
    }
    free(j->chunk);
    j->chunk = NULL;
    j->rc = rc;
    atomic_store(&j->done, true);
    return NULL;
}

/* A finished job: its export joins the ready ones (the oldest leaves). */
static void job_reap(sm_spool *sp) {
    sm_export_job *j = &sp->job;
    if (!j->running || !atomic_load(&j->done)) {
        return;
    }
    if (j->threaded) {
        pthread_join(j->thread, NULL);
    }
    mdb_txn_abort(j->rtxn);
    j->rtxn = NULL;
    j->running = false;
    if (j->rc != 0) {
        file_close(&j->out);
        return;
    }
    sm_export_file *old = sp->ready[0].seq <= sp->ready[1].seq ? &sp->ready[0] : &sp->ready[1];
    file_remove(sp, old);
    *old = j->out;
    memset(&j->out, 0, sizeof j->out);
    j->out.fd = -1;
}

static int job_start(sm_spool *sp, MDB_txn *rtxn, uint64_t seq, uint32_t chunk_bytes) {
    sm_export_job *j = &sp->job;
    char tmp[SPOOL_PATH_BYTES];
    spool_path(sp, tmp, "export", seq, "tmp");
    int fd = open(tmp, O_CREAT | O_TRUNC | O_RDWR | O_CLOEXEC, 0600);
    uint8_t *chunk = malloc(chunk_bytes);
    if (fd < 0 || chunk == NULL) {
        if (fd >= 0) {
            close(fd);
        }
        free(chunk);
        mdb_txn_abort(rtxn);
        return TB_ERR_IO;
    }
    *j = (sm_export_job){.sp = sp, .running = true, .rtxn = rtxn, .chunk = chunk};
    j->out = (sm_export_file){.seq = seq, .chunk_bytes = chunk_bytes, .fd = fd};
    atomic_store(&j->done, false);
    if (sp->background && pthread_create(&j->thread, NULL, job_run, j) == 0) {
        j->threaded = true;
        return TB_ERR_AGAIN;
    }
    job_run(j);
    job_reap(sp);
    return 0;
}

/* ---- setup ------------------------------------------------------------ */

/* An export a previous run left: its hashes file must match its size. */
static void load_export(sm_spool *sp, uint64_t seq) {
    char tbs[SPOOL_PATH_BYTES], sum[SPOOL_PATH_BYTES];
    spool_path(sp, tbs, "export", seq, "tbs");
    spool_path(sp, sum, "export", seq, "sum");
    int fd = open(tbs, O_RDONLY | O_CLOEXEC);
    int sfd = open(sum, O_RDONLY | O_CLOEXEC);
    struct stat st, ss;
    sm_export_file f = {.fd = -1};
    uint8_t cb[4];
    if (fd < 0 || sfd < 0 || fstat(fd, &st) != 0 || fstat(sfd, &ss) != 0 || ss.st_size < 4 ||
        read_all(sfd, cb, 4, 0) != 0) {
        goto fail;
    }
    f.chunk_bytes = (uint32_t)cb[0] << 24 | (uint32_t)cb[1] << 16 | (uint32_t)cb[2] << 8 | cb[3];
    f.total = (uint64_t)st.st_size;
    f.n = (size_t)(ss.st_size - 4) / PROTO_DIGEST_BYTES;
    if (f.chunk_bytes == 0 || (uint64_t)ss.st_size != 4 + f.n * PROTO_DIGEST_BYTES ||
        f.n != (f.total + f.chunk_bytes - 1) / f.chunk_bytes) {
        goto fail;
    }
    f.hashes = malloc(f.n ? f.n * PROTO_DIGEST_BYTES : 1);
    if (f.hashes == NULL || read_all(sfd, f.hashes, f.n * PROTO_DIGEST_BYTES, 4) != 0) {
        free(f.hashes);
        goto fail;
    }
    close(sfd);
    f.seq = seq;
    f.fd = fd;
    sm_export_file *old = sp->ready[0].seq <= sp->ready[1].seq ? &sp->ready[0] : &sp->ready[1];
    file_remove(sp, old);
    *old = f;
    return;
fail:
    if (fd >= 0) {
        close(fd);
    }
    if (sfd >= 0) {
        close(sfd);
    }
    unlink(tbs);
    unlink(sum);
}

int sm_spool_open(sm_store *s, const char *dir, bool background, sm_spool **out) {
    sm_spool *sp = calloc(1, sizeof *sp);
    if (sp == NULL) {
        return TB_ERR_NOMEM;
    }
    if (strlen(dir) >= sizeof sp->dir || (mkdir(dir, 0700) != 0 && errno != EEXIST)) {
        free(sp);
        return TB_ERR_IO;
    }
    snprintf(sp->dir, sizeof sp->dir, "%s", dir);
    sp->s = s;
    sp->background = background;
    sp->import_fd = -1;
    sp->job.out.fd = -1;
    sp->ready[0].fd = sp->ready[1].fd = -1;
    DIR *d = opendir(dir);
    if (d == NULL) {
        free(sp);
        return TB_ERR_IO;
    }
    /* Leftovers of a run that stopped mid-way go; whole exports stay. */
    struct dirent *e;
    uint64_t seqs[64];
    size_t ns = 0;
    while ((e = readdir(d)) != NULL) {
        uint64_t seq = 0;
        char ext[8] = "";
        char p[SPOOL_PATH_BYTES];
        if (sscanf(e->d_name, "export-%20" SCNu64 ".%3s", &seq, ext) == 2 && seq != 0) {
            if (strcmp(ext, "tbs") == 0 && ns < 64) {
                seqs[ns++] = seq;
            } else if (strcmp(ext, "tmp") == 0) {
                snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
                unlink(p);
            }
        } else if (strcmp(e->d_name, "import.part") == 0) {
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            unlink(p);
        }
    }
    closedir(d);
    for (size_t i = 0; i < ns; i++) {
        load_export(sp, seqs[i]);
    }
    *out = sp;
    return 0;
}

void sm_spool_close(sm_spool *sp) {
    if (sp == NULL) {
        return;
    }
    if (sp->job.running) {
        if (sp->job.threaded) {
            pthread_join(sp->job.thread, NULL);
        }
        atomic_store(&sp->job.done, true);
        job_reap(sp);
    }
    for (size_t i = 0; i < SPOOL_READY; i++) {
        file_close(&sp->ready[i]);
    }
    if (sp->import_fd >= 0) {
        close(sp->import_fd);
    }
    free(sp);
}

/* ---- the pbft_app streaming callbacks, through the adapter ------------- */

static sm_export_file *ready_find(sm_spool *sp, uint64_t seq, uint32_t chunk_bytes) {
    for (size_t i = 0; i < SPOOL_READY; i++) {
        if (sp->ready[i].seq == seq && seq != 0 &&
            (chunk_bytes == 0 || sp->ready[i].chunk_bytes == chunk_bytes)) {
            return &sp->ready[i];
        }
    }
    return NULL;
}

int sm_spool_manifest(sm_spool *sp, MDB_txn *(*take_kept)(void *, uint64_t), void *ctx,
                      uint64_t seq, uint32_t chunk_bytes, uint64_t *total,
                      uint8_t (**hashes)[PROTO_DIGEST_BYTES], size_t *n) {
    job_reap(sp);
    sm_export_file *f = ready_find(sp, seq, chunk_bytes);
    if (f == NULL) {
        if (sp->job.running) {
            return TB_ERR_AGAIN; /* one export at a time */
        }
        MDB_txn *rtxn = take_kept(ctx, seq);
        if (rtxn == NULL) {
            return TB_ERR_NOT_FOUND;
        }
        int rc = job_start(sp, rtxn, seq, chunk_bytes);
        if (rc != 0) {
            return rc;
        }
        f = ready_find(sp, seq, chunk_bytes);
        if (f == NULL) {
            return TB_ERR_IO;
        }
    }
    *hashes = malloc(f->n ? f->n * PROTO_DIGEST_BYTES : 1);
    if (*hashes == NULL) {
        return TB_ERR_NOMEM;
    }
    memcpy(*hashes, f->hashes, f->n * PROTO_DIGEST_BYTES);
    *total = f->total;
    *n = f->n;
    return 0;
}

int sm_spool_read(sm_spool *sp, uint64_t seq, uint64_t off, uint8_t *buf, size_t len) {
    job_reap(sp);
    sm_export_file *f = ready_find(sp, seq, 0);
    if (f == NULL) {
        return TB_ERR_NOT_FOUND;
    }
    if (off > f->total || len > f->total - off) {
        return TB_ERR_INVALID;
    }
    return read_all(f->fd, buf, len, off);
}

int sm_spool_import_begin(sm_spool *sp, uint64_t seq, uint64_t total) {
    char p[SPOOL_PATH_BYTES];
    spool_path(sp, p, "import", 0, "part");
    if (sp->import_fd >= 0) {
        close(sp->import_fd);
    }
    sp->import_fd = open(p, O_CREAT | O_TRUNC | O_RDWR | O_CLOEXEC, 0600);
    if (sp->import_fd < 0 || ftruncate(sp->import_fd, (off_t)total) != 0) {
        return TB_ERR_IO;
    }
    sp->import_seq = seq;
    sp->import_total = total;
    return 0;
}

int sm_spool_import_write(sm_spool *sp, uint64_t seq, uint64_t off, const uint8_t *data,
                          size_t len) {
    if (sp->import_fd < 0 || seq != sp->import_seq || off > sp->import_total ||
        len > sp->import_total - off) {
        return TB_ERR_INVALID;
    }
    return write_all(sp->import_fd, data, len, off);
}

int sm_spool_import_map(sm_spool *sp, uint64_t seq, const uint8_t **data, size_t *len) {
    if (sp->import_fd < 0 || seq != sp->import_seq || sp->import_total == 0) {
        return TB_ERR_INVALID;
    }
    void *p = mmap(NULL, sp->import_total, PROT_READ, MAP_PRIVATE, sp->import_fd, 0);
    if (p == MAP_FAILED) {
        return TB_ERR_IO;
    }
    madvise(p, sp->import_total, MADV_SEQUENTIAL);
    *data = p;
    *len = sp->import_total;
    return 0;
}

void sm_spool_import_done(sm_spool *sp, const uint8_t *data, size_t len) {
    char p[SPOOL_PATH_BYTES];
    if (data != NULL) {
        munmap((void *)data, len);
    }
    if (sp->import_fd >= 0) {
        close(sp->import_fd);
        sp->import_fd = -1;
    }
    spool_path(sp, p, "import", 0, "part");
    unlink(p);
}
