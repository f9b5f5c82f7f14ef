/* up / down: run the local replicas of a cluster directory in the
 * background, as a developer or the demo would, without a service manager.
 * Replica i keeps its data in DIR/replica-i/data, its pid in
 * DIR/replica-i/pid and its output in DIR/replica-i/log. "Local" means its
 * key is in DIR/replica-i/ (cluster init puts every key there). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cmd/cli/cli.h"

enum {
    CLI_POLL_MS = 50,          /* how often up/down look again */
    CLI_KILL_WAIT_MS = 2000,   /* after SIGKILL, how long down waits to see it gone */
    CLI_LOG_TAIL_BYTES = 2048, /* of a dead replica's log, shown by up */
    CLI_PID_BYTES_MAX = 32,
};

static uint64_t cli_now_ms(void) {
    struct timespec ts = {0};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void cli_sleep_ms(unsigned ms) {
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static bool cli_replica_paths(const char *dir, uint32_t id, cli_replica *r) {
    char sub[32];
    snprintf(sub, sizeof sub, "replica-%" PRIu32, id);
    r->id = id;
    return cli_join(r->dir, sizeof r->dir, dir, sub) &&
           cli_join(r->data, sizeof r->data, r->dir, "data") &&
           cli_join(r->pid_path, sizeof r->pid_path, r->dir, "pid") &&
           cli_join(r->log_path, sizeof r->log_path, r->dir, "log");
}

/* The pid in a pid file, or 0 when there is none or it does not parse. */
static pid_t cli_pid_read(const char *path) {
    char buf[CLI_PID_BYTES_MAX] = {0};
    uint64_t v = 0;
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return 0;
    }
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    buf[strcspn(buf, "\n")] = '\0';
    return cli_parse_u64(buf, 1, INT_MAX, &v) == 0 ? (pid_t)v : 0;
}

/* True iff pid is a live (not zombie) twinbft-replica: a pid file left by a
 * crash may name a process that has since reused the number, and down
 * must not signal that one. */
static bool cli_pid_alive(pid_t pid) {
    char path[64], buf[512];
    if (pid <= 0 || (kill(pid, 0) != 0 && errno != EPERM)) {
        return false;
    }
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return true; /* no /proc: kill(0) is all we know */
    }
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *close_paren = strrchr(buf, ')'), *open_paren = strchr(buf, '(');
    if (close_paren == NULL || open_paren == NULL || close_paren[1] == '\0' ||
        close_paren[2] == 'Z' || close_paren[2] == 'X') {
        return false;
    }
    /* comm is truncated to 15 characters: "twinbft-replica" is exactly that. */
    return strncmp(open_paren + 1, "twinbft-replica", (size_t)(close_paren - open_paren - 1)) == 0;
}

/* twinbft-replica next to this executable (an installed or built pair),
 * else the first one in PATH. */
static bool cli_replica_binary(char *out, size_t cap) {
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) {
        self[n] = '\0';
        char *slash = strrchr(self, '/');
        if (slash != NULL) {
            *slash = '\0';
            if (cli_join(out, cap, self, "twinbft-replica") && access(out, X_OK) == 0) {
                return true;
            }
        }
    }
    const char *path = getenv("PATH");
    while (path != NULL && *path != '\0') {
        size_t len = strcspn(path, ":");
        int w = snprintf(out, cap, "%.*s/twinbft-replica", (int)len, path);
        if (len > 0 && w > 0 && (size_t)w < cap && access(out, X_OK) == 0) {
            return true;
        }
        path += len + (path[len] == ':');
    }
    return false;
}

/* The child: a session of its own (so the terminal's signals and our exit
 * do not reach it), output to its log, then the replica. */
static void cli_exec_replica(const char *bin, const char *conf, const cli_replica *r,
                             const char *level) {
    char id[16];
    snprintf(id, sizeof id, "%" PRIu32, r->id);
    int log = open(r->log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    int nul = open("/dev/null", O_RDONLY);
    if (setsid() < 0 || log < 0 || nul < 0 || dup2(nul, 0) < 0 || dup2(log, 1) < 0 ||
        dup2(log, 2) < 0) {
        _exit(127);
    }
    close(log);
    close(nul);
    execl(bin, bin, "--config", conf, "--id", id, "--data", r->data, "--log-level", level,
          (char *)NULL);
    fprintf(stderr, "twinbft up: cannot run %s: %s\n", bin, strerror(errno));
    _exit(127);
}

static int cli_spawn(const cli_ctx *c, const char *bin, const char *conf, cli_replica *r,
                     const char *level) {
    if (mkdir(r->data, 0700) != 0 && errno != EEXIST) {
        return cli_fail(c, CLI_EXIT_FAILED, "replica %" PRIu32 ": cannot create %s: %s", r->id,
                        r->data, strerror(errno));
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        return cli_fail(c, CLI_EXIT_FAILED, "cannot fork: %s", strerror(errno));
    }
    if (pid == 0) {
        cli_exec_replica(bin, conf, r, level);
    }
    r->pid = pid;
    r->started = true;
    FILE *f = fopen(r->pid_path, "w");
    bool ok = f != NULL && fprintf(f, "%d\n", (int)pid) > 0;
    ok = f != NULL && fclose(f) == 0 && ok;
    if (!ok) {
        return cli_fail(c, CLI_EXIT_FAILED, "replica %" PRIu32 ": cannot write %s (pid %d runs)",
                        r->id, r->pid_path, (int)pid);
    }
    return CLI_EXIT_OK;
}

static bool cli_port_open(const rep_member *m) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    char port[8];
    bool open_ = false;
    snprintf(port, sizeof port, "%u", (unsigned)m->port);
    if (getaddrinfo(m->host, port, &hints, &ai) != 0) {
        return false;
    }
    int fd = socket(ai->ai_family, ai->ai_socktype, 0);
    if (fd >= 0) {
        open_ = connect(fd, ai->ai_addr, ai->ai_addrlen) == 0;
        close(fd);
    }
    freeaddrinfo(ai);
    return open_;
}

static void cli_log_tail(const char *path) {
    char buf[CLI_LOG_TAIL_BYTES + 1];
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return;
    }
    if (fseek(f, 0, SEEK_END) == 0) {
        long size = ftell(f);
        fseek(f, size > CLI_LOG_TAIL_BYTES ? size - CLI_LOG_TAIL_BYTES : 0, SEEK_SET);
    }
    size_t n = fread(buf, 1, CLI_LOG_TAIL_BYTES, f);
    fclose(f);
    buf[n] = '\0';
    fprintf(stderr, "--- last lines of %s:\n%s%s---\n", path, buf,
            n > 0 && buf[n - 1] != '\n' ? "\n" : "");
}

/* Waits until replica r listens or dies. 0 listening, 1 died, 3 timed out. */
static int cli_wait_listening(const cli_ctx *c, const rep_member *m, cli_replica *r,
                              uint64_t timeout_ms, uint64_t deadline) {
    for (;;) {
        int status = 0;
        if (waitpid(r->pid, &status, WNOHANG) == r->pid) {
            unlink(r->pid_path);
            cli_fail(c, CLI_EXIT_FAILED, "replica %" PRIu32 " exited (%s %d) during start-up",
                     r->id, WIFEXITED(status) ? "status" : "signal",
                     WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
            cli_log_tail(r->log_path);
            return CLI_EXIT_FAILED;
        }
        if (cli_port_open(m)) {
            return CLI_EXIT_OK;
        }
        if (cli_now_ms() >= deadline) {
            cli_fail(c, CLI_EXIT_UNREACHABLE,
                     "replica %" PRIu32 " (pid %d) is not listening on %s:%u after %" PRIu64
                     " ms; it keeps running (see %s)",
                     r->id, (int)r->pid, m->host, (unsigned)m->port, timeout_ms, r->log_path);
            return CLI_EXIT_UNREACHABLE;
        }
        cli_sleep_ms(CLI_POLL_MS);
    }
}

static int cli_load_dir(const cli_ctx *c, const char *dir, char *conf, rep_cluster *cl) {
    char err[REP_CONFIG_ERR_BYTES];
    if (!cli_join(conf, CLI_PATH_BYTES_MAX, dir, "cluster.conf")) {
        return cli_fail(c, CLI_EXIT_FAILED, "--dir %s: path too long", dir);
    }
    if (rep_cluster_load(conf, cl, err, sizeof err) != 0) {
        return cli_fail(c, CLI_EXIT_FAILED, "%s", err);
    }
    return CLI_EXIT_OK;
}

static int cli_up_start(const cli_ctx *c, const char *dir, const char *conf, const char *bin,
                        const char *level, FILE *report, cli_replica *rs, uint32_t n,
                        uint32_t *running) {
    char key[CLI_PATH_BYTES_MAX];
    int rc = CLI_EXIT_OK;
    for (uint32_t i = 0; i < n; i++) {
        cli_replica *r = &rs[i];
        if (!cli_replica_paths(dir, i, r) || !cli_join(key, sizeof key, r->dir, "key.pem")) {
            return cli_fail(c, CLI_EXIT_FAILED, "--dir %s: path too long", dir);
        }
        if (access(key, R_OK) != 0) {
            continue; /* not a local replica */
        }
        pid_t old = cli_pid_read(r->pid_path);
        if (cli_pid_alive(old)) {
            /* up brings the cluster up: a running replica is already there,
             * so `up` after a crash restarts exactly the ones that died. */
            if (report != NULL) {
                fprintf(report, "replica %" PRIu32 ": already running, pid %d\n", i, (int)old);
            }
            r->pid = old;
            (*running)++;
            continue;
        }
        int src = cli_spawn(c, bin, conf, r, level);
        rc = rc == CLI_EXIT_OK ? src : rc;
    }
    return rc;
}

int cli_up_dir(const cli_ctx *c, const char *dir, const char *level, uint64_t timeout_ms,
               FILE *report, cli_replica *rs, uint32_t *n) {
    static rep_cluster cl;
    char conf[CLI_PATH_BYTES_MAX], bin[CLI_PATH_BYTES_MAX];
    int rc = cli_load_dir(c, dir, conf, &cl);
    if (rc != CLI_EXIT_OK) {
        return rc;
    }
    if (!cli_replica_binary(bin, sizeof bin)) {
        return cli_fail(c, CLI_EXIT_FAILED,
                        "twinbft-replica is neither next to this executable nor in PATH");
    }
    uint32_t running = 0;
    memset(rs, 0, cl.n * sizeof *rs);
    *n = cl.n;
    rc = cli_up_start(c, dir, conf, bin, level, report, rs, cl.n, &running);
    uint64_t deadline = cli_now_ms() + timeout_ms;
    uint32_t started = 0;
    for (uint32_t i = 0; i < cl.n; i++) {
        if (!rs[i].started) {
            continue;
        }
        int wrc = cli_wait_listening(c, &cl.members[i], &rs[i], timeout_ms, deadline);
        rc = rc == CLI_EXIT_OK ? wrc : rc;
        if (wrc == CLI_EXIT_OK) {
            started++;
            if (report != NULL) {
                fprintf(report,
                        "replica %" PRIu32 ": started, pid %d, listening on %s:%u (log %s)\n", i,
                        (int)rs[i].pid, cl.members[i].host, (unsigned)cl.members[i].port,
                        rs[i].log_path);
            }
        }
    }
    if (started == 0 && running == 0 && rc == CLI_EXIT_OK) {
        rc = cli_fail(c, CLI_EXIT_FAILED, "no local replica in %s (no replica-N/key.pem)", dir);
    }
    return rc;
}

static int cli_up(cli_ctx *c) {
    static cli_replica rs[REP_MEMBERS_MAX];
    const char *level = cli_opt(c, "log-level");
    uint32_t n = 0;
    if (level != NULL && strcmp(level, "error") && strcmp(level, "warn") && strcmp(level, "info") &&
        strcmp(level, "debug")) {
        return cli_usage_error(c, "--log-level \"%s\": expected error|warn|info|debug", level);
    }
    return cli_up_dir(c, cli_opt(c, "dir"), level != NULL ? level : "info",
                      (uint64_t)c->g->timeout_ms, stdout, rs, &n);
}

/* SIGTERM, up to timeout_ms for a clean exit, then SIGKILL. */
static const char *cli_stop(pid_t pid, uint64_t timeout_ms) {
    uint64_t deadline = cli_now_ms() + timeout_ms;
    if (kill(pid, SIGTERM) != 0) {
        return errno == ESRCH ? "stopped (it was exiting)" : "could not be signalled";
    }
    while (cli_pid_alive(pid) && cli_now_ms() < deadline) {
        cli_sleep_ms(CLI_POLL_MS);
    }
    if (!cli_pid_alive(pid)) {
        return "stopped (SIGTERM)";
    }
    kill(pid, SIGKILL);
    deadline = cli_now_ms() + CLI_KILL_WAIT_MS;
    while (cli_pid_alive(pid) && cli_now_ms() < deadline) {
        cli_sleep_ms(CLI_POLL_MS);
    }
    return cli_pid_alive(pid) ? "still running after SIGKILL" : "killed (SIGKILL after --timeout)";
}

/* Every replica is tried even when one cannot be stopped: leaving the
 * others running would be worse. */
int cli_down_dir(const cli_ctx *c, const char *dir, uint64_t timeout_ms, FILE *report) {
    static rep_cluster cl;
    char conf[CLI_PATH_BYTES_MAX];
    cli_replica r;
    int rc = cli_load_dir(c, dir, conf, &cl);
    uint32_t n = rc == CLI_EXIT_OK ? cl.n : 0;
    for (uint32_t i = 0; i < n; i++) {
        if (!cli_replica_paths(dir, i, &r)) {
            return cli_fail(c, CLI_EXIT_FAILED, "--dir %s: path too long", dir);
        }
        pid_t pid = cli_pid_read(r.pid_path);
        const char *what = "not running";
        if (pid > 0 && !cli_pid_alive(pid)) {
            what = "not running (stale pid file removed)";
        } else if (pid > 0) {
            what = cli_stop(pid, timeout_ms);
        }
        if (strstr(what, "still") != NULL || strstr(what, "could not") != NULL) {
            rc = cli_fail(c, CLI_EXIT_FAILED, "replica %" PRIu32 " (pid %d) %s", i, (int)pid, what);
            continue;
        }
        if (pid > 0) {
            unlink(r.pid_path);
        }
        if (report != NULL) {
            fprintf(report, "replica %" PRIu32 ": %s\n", i, what);
        }
    }
    return rc;
}

static int cli_down(cli_ctx *c) {
    return cli_down_dir(c, cli_opt(c, "dir"), (uint64_t)c->g->timeout_ms, stdout);
}

static const cli_flag cli_up_flags[] = {
    {"dir", "DIR", CLI_FLAG_REQUIRED, "a cluster directory made by cluster init"},
    {"log-level", "LEVEL", 0, "the replicas' log level: error|warn|info (default)|debug"},
    {NULL, NULL, 0, NULL},
};

static const cli_flag cli_down_flags[] = {
    {"dir", "DIR", CLI_FLAG_REQUIRED, "a cluster directory made by cluster init"},
    {NULL, NULL, 0, NULL},
};

const cli_cmd CLI_UP_CMDS[] = {
    {"up", "", 0, 0,
     "Start the local replicas of DIR/cluster.conf that are not running, in the background.",
     "Replica i runs detached (its own session) with data in DIR/replica-i/data, pid in\n"
     "DIR/replica-i/pid and output in DIR/replica-i/log. twinbft-replica is taken from\n"
     "next to this executable, else from PATH. A replica whose pid file names a live\n"
     "process is left running (so `up` after a crash restarts the ones that died).\n"
     "Waits up to --timeout for each started one to accept TCP\n"
     "connections; a replica that dies meanwhile is reported with its log's tail (exit 1),\n"
     "one that is still not listening exits 3.\n",
     cli_up_flags, 0, cli_up},
    {"down", "", 0, 0, "Stop the replicas `up` started in DIR.",
     "SIGTERM, up to --timeout for a clean shutdown, then SIGKILL; pid files are removed.\n",
     cli_down_flags, 0, cli_down},
    {NULL, NULL, 0, 0, NULL, NULL, NULL, 0, NULL},
};
