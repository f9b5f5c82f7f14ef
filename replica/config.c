/* The cluster file, parsed with inih (libinih) and checked here. */
#include "replica/config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ini.h>

#include "proto/tb_assert.h"
#include "proto/tb_err.h"

/* inih reads a line into a buffer of INI_MAX_LINE bytes; a longer line
 * would be split silently into two, so we refuse it instead. The newline
 * and the NUL take the last two bytes. */
enum { CFG_LINE_CHARS_MAX = INI_MAX_LINE - 2, CFG_MSG_BYTES = 384 };

typedef struct cfg_parse {
    rep_cluster *out;
    const char *path; /* for messages */
    size_t dir_len;   /* path[0..dir_len) is the directory, with its '/' */
    const char *cursor;
    int line;         /* the line the reader returned last */
    int section_line; /* the line of the last [section] header */
    int open_line;    /* the header line of the section keys go to now */
    bool in_cluster;
    bool failed;  /* err holds the first error found by the handler or the reader */
    int err_line; /* its line, 0 for the whole file */
    char err[CFG_MSG_BYTES];
    bool cluster_seen, have_id, have_ca, have_epoch, have_history, have_outbox, have_log_retain;
    bool member_seen[REP_MEMBERS_MAX];
    bool have_address[REP_MEMBERS_MAX], have_cert[REP_MEMBERS_MAX], have_http[REP_MEMBERS_MAX];
    int member_line[REP_MEMBERS_MAX];
    int member_cur; /* the replica whose section is open, -1 for none */
} cfg_parse;

/* Records the first error only: later ones are often its consequences. */
__attribute__((format(printf, 3, 4))) static int cfg_fail(cfg_parse *p, int line, const char *fmt,
                                                          ...) {
    va_list ap;
    if (p->failed) {
        return 0;
    }
    p->failed = true;
    va_start(ap, fmt);
    vsnprintf(p->err, sizeof p->err, fmt, ap);
    va_end(ap);
    p->err_line = line;
    return 0; /* what an inih handler returns for an error */
}

/* inih's reader, over the text in memory. It counts lines for messages and
 * stops the parse at a line too long for inih's buffer. */
static char *cfg_reader(char *str, int num, void *stream) {
    cfg_parse *p = stream;
    const char *s = p->cursor;
    if (*s == '\0' || p->failed) {
        return NULL;
    }
    const char *nl = strchr(s, '\n');
    size_t len = nl != NULL ? (size_t)(nl - s) + 1 : strlen(s);
    p->line++;
    if (len - (nl != NULL) > CFG_LINE_CHARS_MAX || len >= (size_t)num) {
        cfg_fail(p, p->line, "line is longer than %d characters", CFG_LINE_CHARS_MAX);
        return NULL;
    }
    memcpy(str, s, len);
    str[len] = '\0';
    p->cursor = s + len;
    size_t lead = strspn(str, " \t");
    if (str[lead] == '[') {
        p->section_line = p->line;
    }
    return str;
}

/* "HOST:PORT" (or "[V6]:PORT") into host and port; what names the key. */
static int cfg_address(cfg_parse *p, const char *who, const char *what, const char *value,
                       char host[REP_HOST_BYTES_MAX], uint16_t *port) {
    const char *colon = strrchr(value, ':');
    const char *h = value, *h_end = colon;
    if (value[0] == '[') {
        const char *close = strchr(value, ']');
        h = value + 1;
        h_end = close;
        if (close == NULL || close[1] != ':') {
            return cfg_fail(p, p->line, "%s: %s \"%s\" has no port (expected [HOST]:PORT)", who,
                            what, value);
        }
        colon = close + 1;
    } else if (colon == NULL) {
        return cfg_fail(p, p->line, "%s: %s \"%s\" has no port (expected HOST:PORT)", who, what,
                        value);
    }
    size_t host_len = (size_t)(h_end - h);
    if (host_len == 0) {
        return cfg_fail(p, p->line, "%s: %s \"%s\" has no host (expected HOST:PORT)", who, what,
                        value);
    }
    if (host_len >= REP_HOST_BYTES_MAX) {
        return cfg_fail(p, p->line, "%s: %s host is longer than %d characters", who, what,
                        REP_HOST_BYTES_MAX - 1);
    }
    char *end = NULL;
    errno = 0;
    unsigned long v = strtoul(colon + 1, &end, 10);
    if (colon[1] < '0' || colon[1] > '9' || *end != '\0') {
        return cfg_fail(p, p->line, "%s: %s \"%s\" has a port that is not a number", who, what,
                        value);
    }
    if (errno != 0 || v == 0 || v > UINT16_MAX) {
        return cfg_fail(p, p->line, "%s: port %s in %s \"%s\" is out of range (expected 1-65535)",
                        who, colon + 1, what, value);
    }
    memcpy(host, h, host_len);
    host[host_len] = '\0';
    *port = (uint16_t)v;
    return 1;
}

/* A path from the file, joined with the file's directory unless absolute. */
static int cfg_path(cfg_parse *p, const char *who, const char *what, const char *value,
                    char out[REP_PATH_BYTES_MAX]) {
    size_t dir_len = value[0] == '/' ? 0 : p->dir_len;
    if (value[0] == '\0') {
        return cfg_fail(p, p->line, "%s: %s is empty (expected a file path)", who, what);
    }
    if (dir_len + strlen(value) >= REP_PATH_BYTES_MAX) {
        return cfg_fail(p, p->line,
                        "%s: %s path is too long (at most %d bytes once joined with the cluster "
                        "file's directory; move the files closer to it)",
                        who, what, REP_PATH_BYTES_MAX - 1);
    }
    memcpy(out, p->path, dir_len);
    strcpy(out + dir_len, value);
    return 1;
}

/* Cluster ids go into signed bodies and file names, so they are plain. */
bool rep_cluster_id_valid(const char *id) {
    size_t len = strlen(id);
    return len > 0 && len < REP_CLUSTER_ID_BYTES_MAX &&
           strspn(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") == len;
}

bool rep_member_of_name(const char *name, uint32_t n, uint32_t *id) {
    size_t plen = strlen(REP_MEMBER_NAME_PREFIX);
    if (strncmp(name, REP_MEMBER_NAME_PREFIX, plen) != 0) {
        return false;
    }
    const char *d = name + plen;
    size_t len = strlen(d);
    /* At most 10 digits, so the value fits in 64 bits before the range check. */
    if (len == 0 || len > 10 || strspn(d, "0123456789") != len || (d[0] == '0' && len > 1)) {
        return false;
    }
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        v = v * 10 + (uint64_t)(d[i] - '0');
    }
    if (v >= n) {
        return false;
    }
    *id = (uint32_t)v;
    return true;
}

/* A decimal number of 0 to UINT64_MAX, digits only. */
static bool cfg_u64(const char *value, uint64_t *out) {
    char *end = NULL;
    errno = 0;
    *out = strtoull(value, &end, 10);
    return value[0] >= '0' && value[0] <= '9' && *end == '\0' && errno == 0;
}

static int cfg_cluster_key(cfg_parse *p, const char *name, const char *value) {
    rep_cluster *c = p->out;
    if (strcmp(name, "id") == 0) {
        if (p->have_id) {
            return cfg_fail(p, p->line, "[cluster]: id is given twice");
        }
        if (!rep_cluster_id_valid(value)) {
            return cfg_fail(p, p->line,
                            "[cluster]: id \"%s\" must be 1-%d characters of A-Z a-z 0-9 . _ -",
                            value, REP_CLUSTER_ID_BYTES_MAX - 1);
        }
        strcpy(c->id, value);
        p->have_id = true;
        return 1;
    }
    if (strcmp(name, "ca") == 0) {
        if (p->have_ca) {
            return cfg_fail(p, p->line, "[cluster]: ca is given twice");
        }
        p->have_ca = true;
        return cfg_path(p, "[cluster]", "ca", value, c->ca_path);
    }
    if (strcmp(name, "epoch") == 0) {
        if (p->have_epoch) {
            return cfg_fail(p, p->line, "[cluster]: epoch is given twice");
        }
        if (!cfg_u64(value, &c->epoch)) {
            return cfg_fail(p, p->line,
                            "[cluster]: epoch \"%s\" is not a number (expected 0 to %" PRIu64 ")",
                            value, UINT64_MAX);
        }
        p->have_epoch = true;
        return 1;
    }
    if (strcmp(name, "history_window") == 0) {
        if (p->have_history) {
            return cfg_fail(p, p->line, "[cluster]: history_window is given twice");
        }
        if (!cfg_u64(value, &c->history_window) ||
            (c->history_window != 0 && c->history_window < REP_HISTORY_WINDOW_MIN)) {
            return cfg_fail(p, p->line,
                            "[cluster]: history_window \"%s\" must be 0 (keep every event) or a "
                            "number of seqs from %d up",
                            value, REP_HISTORY_WINDOW_MIN);
        }
        p->have_history = true;
        return 1;
    }
    if (strcmp(name, "log_retain") == 0) {
        if (p->have_log_retain) {
            return cfg_fail(p, p->line, "[cluster]: log_retain is given twice");
        }
        if (!cfg_u64(value, &c->log_retain) || c->log_retain < REP_LOG_RETAIN_MIN) {
            return cfg_fail(p, p->line,
                            "[cluster]: log_retain \"%s\" must be a number of seqs from %d up",
                            value, REP_LOG_RETAIN_MIN);
        }
        p->have_log_retain = true;
        return 1;
    }
    if (strcmp(name, "outbox_window") == 0) {
        if (p->have_outbox) {
            return cfg_fail(p, p->line, "[cluster]: outbox_window is given twice");
        }
        if (!cfg_u64(value, &c->outbox_window) || c->outbox_window < REP_OUTBOX_WINDOW_MIN) {
            return cfg_fail(p, p->line,
                            "[cluster]: outbox_window \"%s\" must be a number of seqs from %d up",
                            value, REP_OUTBOX_WINDOW_MIN);
        }
        p->have_outbox = true;
        return 1;
    }
    return cfg_fail(p, p->line,
                    "[cluster]: unknown key \"%s\" (expected id, ca, epoch, history_window, "
                    "outbox_window or log_retain)",
                    name);
}

static int cfg_member_key(cfg_parse *p, const char *name, const char *value) {
    uint32_t id = (uint32_t)p->member_cur;
    rep_member *m = &p->out->members[id];
    char who[32];
    snprintf(who, sizeof who, "replica %" PRIu32, id);
    if (strcmp(name, "address") == 0) {
        if (p->have_address[id]) {
            return cfg_fail(p, p->line, "%s: address is given twice", who);
        }
        p->have_address[id] = true;
        return cfg_address(p, who, "address", value, m->host, &m->port);
    }
    if (strcmp(name, "cert") == 0) {
        if (p->have_cert[id]) {
            return cfg_fail(p, p->line, "%s: cert is given twice", who);
        }
        p->have_cert[id] = true;
        return cfg_path(p, who, "cert", value, m->cert_path);
    }
    if (strcmp(name, "http") == 0) {
        if (p->have_http[id]) {
            return cfg_fail(p, p->line, "%s: http is given twice", who);
        }
        p->have_http[id] = true;
        return cfg_address(p, who, "http address", value, m->http_host, &m->http_port);
    }
    return cfg_fail(p, p->line, "%s: unknown key \"%s\" (expected address, cert or http)", who,
                    name);
}

/* Called for the first key after a [section] header: inih reports keys, not
 * headers, so this is where a section begins. */
static int cfg_section_enter(cfg_parse *p, const char *section) {
    int line = p->section_line;
    if (strcmp(section, "cluster") == 0) {
        if (p->cluster_seen) {
            return cfg_fail(p, line, "[cluster] appears twice (give it once)");
        }
        p->cluster_seen = true;
        p->in_cluster = true;
        return 1;
    }
    if (strncmp(section, "replica ", 8) != 0) {
        return cfg_fail(p, line, "unknown section [%s] (expected [cluster] or [replica N])",
                        section);
    }
    const char *num = section + 8;
    char *end = NULL;
    unsigned long id = strtoul(num, &end, 10);
    if (num[0] < '0' || num[0] > '9' || *end != '\0' || id >= REP_MEMBERS_MAX) {
        return cfg_fail(p, line, "[%s]: replica id must be a number from 0 to %d", section,
                        REP_MEMBERS_MAX - 1);
    }
    if (p->member_seen[id]) {
        return cfg_fail(p, line, "duplicate replica %lu (first defined on line %d)", id,
                        p->member_line[id]);
    }
    p->member_seen[id] = true;
    p->member_line[id] = line;
    p->member_cur = (int)id;
    p->out->members[id].id = (uint32_t)id;
    return 1;
}

static int cfg_handler(void *user, const char *section, const char *name, const char *value) {
    cfg_parse *p = user;
    if (section[0] == '\0') {
        return cfg_fail(p, p->line,
                        "key \"%s\" is outside any section (put it under [cluster] or "
                        "[replica N])",
                        name);
    }
    /* A header line read since the last key opens a section, also when it
     * repeats the previous section's name. */
    if (p->section_line != p->open_line) {
        p->open_line = p->section_line;
        p->in_cluster = false;
        p->member_cur = -1;
        if (cfg_section_enter(p, section) == 0) {
            return 0;
        }
    }
    if (p->in_cluster) {
        return cfg_cluster_key(p, name, value);
    }
    TB_ASSERT(p->member_cur >= 0 && p->member_cur < REP_MEMBERS_MAX);
    return cfg_member_key(p, name, value);
}

_Static_assert(REP_MEMBERS_SINGLE < REP_MEMBERS_BFT_MIN && REP_MEMBERS_BFT_MIN <= REP_MEMBERS_MAX,
               "a single replica, then the smallest BFT cluster, then the largest");
_Static_assert(REP_MEMBERS_MAX == 64, "rep_cluster_size_problem's message says 64");

const char *rep_cluster_size_problem(uint32_t n) {
    if (n == REP_MEMBERS_SINGLE || (n >= REP_MEMBERS_BFT_MIN && n <= REP_MEMBERS_MAX)) {
        return NULL;
    }
    if (n > REP_MEMBERS_SINGLE && n < REP_MEMBERS_BFT_MIN) {
        /* f = (n-1)/3 = 0 for n = 2, 3: no Byzantine replica is tolerated, as
         * with one, but every request waits for a quorum of 2 over the network
         * (and a faulty primary of 3 can make two replicas commit different
         * batches). */
        return "2 or 3 replicas tolerate no faulty replica (f = 0, as 1 does) yet every request "
               "waits for 2 of them; use 1 replica for development, or 4 or more (n >= 3f+1, "
               "f >= 1) to tolerate faults";
    }
    return "a cluster has 1 replica (development, no fault tolerance) or 4 to 64 "
           "(n >= 3f+1 with f >= 1)";
}

/* What only the whole file can show: required keys and the member set. */
static int cfg_check_whole(cfg_parse *p) {
    uint32_t n = 0;
    if (!p->cluster_seen || !p->have_id) {
        return cfg_fail(p, 0, "no cluster id (add a [cluster] section with id = NAME)");
    }
    if (!p->have_ca) {
        return cfg_fail(p, 0, "no CA certificate (add ca = ca.pem to [cluster])");
    }
    for (uint32_t i = 0; i < REP_MEMBERS_MAX; i++) {
        if (p->member_seen[i]) {
            n = i + 1;
        }
    }
    for (uint32_t i = 0; i < n; i++) {
        if (!p->member_seen[i]) {
            return cfg_fail(p, 0,
                            "replica ids must be contiguous from 0: [replica %" PRIu32
                            "] is missing (or has no keys)",
                            i);
        }
        if (!p->have_address[i]) {
            return cfg_fail(p, p->member_line[i],
                            "replica %" PRIu32 ": no address (add address = HOST:PORT)", i);
        }
        if (!p->have_cert[i]) {
            return cfg_fail(
                p, p->member_line[i],
                "replica %" PRIu32 ": no cert (add cert = replica-%" PRIu32 "/cert.pem)", i, i);
        }
    }
    const char *size_problem = rep_cluster_size_problem(n);
    if (size_problem != NULL) {
        return cfg_fail(p, 0, "%" PRIu32 " replicas defined: %s", n, size_problem);
    }
    p->out->n = n;
    return 1;
}

static void cfg_message(char *err, size_t err_cap, const char *path, int line, const char *msg) {
    if (err_cap == 0) {
        return;
    }
    if (line > 0) {
        snprintf(err, err_cap, "%s:%d: %s", path, line, msg);
    } else {
        snprintf(err, err_cap, "%s: %s", path, msg);
    }
}

int rep_cluster_parse(const char *text, const char *path, rep_cluster *out, char *err,
                      size_t err_cap) {
    cfg_parse *p = calloc(1, sizeof *p); /* large: kept off the daemon's stack */
    const char *slash = strrchr(path, '/');
    int rc = TB_ERR_INVALID;
    if (p == NULL) {
        cfg_message(err, err_cap, path, 0, "out of memory");
        return TB_ERR_NOMEM;
    }
    memset(out, 0, sizeof *out);
    out->history_window = REP_HISTORY_WINDOW_DEFAULT;
    out->outbox_window = REP_OUTBOX_WINDOW_DEFAULT;
    out->log_retain = REP_LOG_RETAIN_DEFAULT;
    p->out = out;
    p->path = path;
    p->dir_len = slash != NULL ? (size_t)(slash - path) + 1 : 0;
    p->cursor = text;
    p->member_cur = -1;
    int ret = ini_parse_stream(cfg_reader, p, cfg_handler, p);
    if (ret == -2) {
        cfg_message(err, err_cap, path, 0, "out of memory");
        rc = TB_ERR_NOMEM;
    } else if (ret > 0 && (!p->failed || ret < p->err_line)) {
        /* inih's own complaint: a line that is neither a header nor a key. */
        cfg_message(err, err_cap, path, ret,
                    "syntax error (expected [SECTION], KEY = VALUE or a ; comment)");
    } else if (p->failed || cfg_check_whole(p) == 0) {
        cfg_message(err, err_cap, path, p->err_line, p->err);
    } else {
        rc = 0;
    }
    free(p);
    return rc;
}

int rep_cluster_load(const char *path, rep_cluster *out, char *err, size_t err_cap) {
    char msg[CFG_MSG_BYTES];
    int rc = TB_ERR_IO;
    char *text = NULL;
    FILE *fp = fopen(path, "r");
    if (fp == NULL) {
        snprintf(msg, sizeof msg, "cannot open: %s", strerror(errno));
        goto fail;
    }
    text = malloc(REP_CLUSTER_FILE_BYTES_MAX + 1);
    if (text == NULL) {
        rc = TB_ERR_NOMEM;
        snprintf(msg, sizeof msg, "out of memory");
        goto fail;
    }
    size_t len = fread(text, 1, REP_CLUSTER_FILE_BYTES_MAX + 1, fp);
    if (ferror(fp)) {
        snprintf(msg, sizeof msg, "cannot read: %s", strerror(errno));
        goto fail;
    }
    if (len > REP_CLUSTER_FILE_BYTES_MAX) {
        rc = TB_ERR_TOO_LARGE;
        snprintf(msg, sizeof msg, "larger than %d bytes; is this the cluster file?",
                 REP_CLUSTER_FILE_BYTES_MAX);
        goto fail;
    }
    if (memchr(text, '\0', len) != NULL) {
        rc = TB_ERR_INVALID;
        snprintf(msg, sizeof msg, "contains a NUL byte; is this the cluster file?");
        goto fail;
    }
    text[len] = '\0';
    fclose(fp);
    rc = rep_cluster_parse(text, path, out, err, err_cap);
    free(text);
    return rc;
fail:
    if (fp != NULL) {
        fclose(fp);
    }
    free(text);
    cfg_message(err, err_cap, path, 0, msg);
    return rc;
}

static void cfg_write_member(FILE *fp, const rep_member *m) {
    bool v6 = strchr(m->host, ':') != NULL;
    fprintf(fp, "\n[replica %" PRIu32 "]\n", m->id);
    fprintf(fp, v6 ? "address = [%s]:%u\n" : "address = %s:%u\n", m->host, (unsigned)m->port);
    fprintf(fp, "cert = %s\n", m->cert_path);
    if (m->http_port != 0) {
        bool http_v6 = strchr(m->http_host, ':') != NULL;
        fprintf(fp, http_v6 ? "http = [%s]:%u\n" : "http = %s:%u\n", m->http_host,
                (unsigned)m->http_port);
    }
}

int rep_cluster_write(const rep_cluster *c, const char *path) {
    char tmp[REP_PATH_BYTES_MAX + 8];
    int rc = TB_ERR_IO;
    TB_ASSERT(c->n <= REP_MEMBERS_MAX);
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) {
        return TB_ERR_IO;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    FILE *fp = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (fp == NULL) {
        if (fd >= 0) {
            close(fd);
        }
        return TB_ERR_IO;
    }
    fprintf(fp, "; twinbft cluster file. Paths are relative to this file's directory.\n");
    fprintf(fp, "[cluster]\nid = %s\nca = %s\nepoch = %" PRIu64 "\n", c->id, c->ca_path, c->epoch);
    fprintf(fp,
            "; the twins' events of the last this many seqs are kept (0: all); the same on "
            "every replica\nhistory_window = %" PRIu64 "\n",
            c->history_window);
    fprintf(fp,
            "; commands pushed to subscribers are kept for this many seqs (a subscriber away "
            "longer resyncs)\noutbox_window = %" PRIu64 "\n",
            c->outbox_window);
    fprintf(fp,
            "; committed batches kept below the stable checkpoint, for replicas that fell "
            "behind to replay\nlog_retain = %" PRIu64 "\n",
            c->log_retain);
    for (uint32_t i = 0; i < c->n; i++) {
        cfg_write_member(fp, &c->members[i]);
    }
    /* The rename is the commit point: a crash leaves the old file or the
     * new one, never half of one. */
    if (fflush(fp) == 0 && !ferror(fp) && fsync(fileno(fp)) == 0) {
        rc = 0;
    }
    if (fclose(fp) != 0 || rc != 0 || rename(tmp, path) != 0) {
        unlink(tmp);
        return TB_ERR_IO;
    }
    return 0;
}
