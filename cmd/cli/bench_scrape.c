/* Prometheus scrapes and /proc CPU times for twinbft bench (bench_scrape.h). */
#include "cmd/cli/bench_scrape.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>

#include "proto/tb_err.h"

static const char *const cli_metric_names[CLI_METRICS] = {
    [CLI_METRIC_BATCHES] = "twinbft_batches_executed_total",
    [CLI_METRIC_REQUESTS] = "twinbft_requests_executed_total",
    [CLI_METRIC_COMMITS] = "twinbft_storage_commits_total",
    [CLI_METRIC_VIEW_CHANGES] = "twinbft_view_changes_total",
    [CLI_METRIC_IS_PRIMARY] = "twinbft_is_primary",
    [CLI_METRIC_SIGNS] = "twinbft_ed25519_signs_total",
    [CLI_METRIC_VERIFIES] = "twinbft_ed25519_verifies_total",
    [CLI_METRIC_CPU] = "process_cpu_seconds_total",
};

/* One "name value" line; comments and labelled samples are skipped. */
static void cli_metrics_line(const char *line, size_t len, cli_metrics *m) {
    char buf[256];
    if (len == 0 || line[0] == '#' || len >= sizeof buf || memchr(line, '{', len) != NULL) {
        return;
    }
    memcpy(buf, line, len);
    buf[len] = '\0';
    char *sp = strchr(buf, ' ');
    if (sp == NULL) {
        return;
    }
    *sp = '\0';
    for (int k = 0; k < CLI_METRICS; k++) {
        if (strcmp(buf, cli_metric_names[k]) == 0) {
            char *end = NULL;
            errno = 0;
            double v = strtod(sp + 1, &end);
            if (end != sp + 1 && errno == 0) {
                m->v[k] = v;
                m->has[k] = true;
            }
            return;
        }
    }
}

void cli_metrics_parse(const char *text, size_t len, cli_metrics *m) {
    size_t at = 0;
    while (at < len) {
        const char *nl = memchr(text + at, '\n', len - at);
        size_t end = nl != NULL ? (size_t)(nl - text) : len;
        cli_metrics_line(text + at, end - at, m);
        at = end + 1;
    }
}

static void cli_scrape_finish_one(cli_scrape *s) {
    if (--s->pending == 0 && s->done != NULL) {
        s->done(s->arg);
    }
}

static void cli_scrape_on_answer(struct evhttp_request *req, void *arg) {
    cli_scrape_one *o = arg;
    cli_metrics *m = &o->s->m[o->i];
    if (req != NULL && evhttp_request_get_response_code(req) == 200) {
        struct evbuffer *in = evhttp_request_get_input_buffer(req);
        size_t len = evbuffer_get_length(in);
        if (len <= CLI_SCRAPE_BODY_BYTES_MAX) {
            const char *text = (const char *)evbuffer_pullup(in, -1);
            m->answered = text != NULL || len == 0;
            if (text != NULL) {
                cli_metrics_parse(text, len, m);
            }
        }
    }
    cli_scrape_finish_one(o->s);
}

/* A zero-delay timer, so that done never runs inside cli_scrape_start. */
static void cli_scrape_on_none(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    cli_scrape_finish_one(arg);
}

static bool cli_scrape_get(struct event_base *base, const rep_member *mb, cli_scrape_one *o) {
    struct evhttp_connection *conn =
        evhttp_connection_base_new(base, NULL, mb->http_host, mb->http_port);
    if (conn == NULL) {
        return false;
    }
    evhttp_connection_set_timeout(conn, CLI_SCRAPE_TIMEOUT_S);
    struct evhttp_request *req = evhttp_request_new(cli_scrape_on_answer, o);
    if (req == NULL) {
        evhttp_connection_free(conn);
        return false;
    }
    evhttp_add_header(evhttp_request_get_output_headers(req), "Host", mb->http_host);
    /* Without it the connection idles after the answer and is never freed
     * (libevent frees an auto-free connection only once it closes). */
    evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
    /* On failure make_request frees req itself. The connection is ours to
     * free either way: libevent 2.1 frees an auto-free connection neither
     * after a failed connect nor while it idles. */
    o->conn = conn;
    return evhttp_make_request(conn, req, EVHTTP_REQ_GET, "/metrics") == 0;
}

int cli_scrape_start(struct event_base *base, const rep_cluster *cl, cli_scrape *s,
                     void (*done)(void *arg), void *arg) {
    memset(s, 0, sizeof *s);
    s->n = cl->n;
    s->done = done;
    s->arg = arg;
    s->started = true;
    s->pending = 1; /* held until every GET is under way */
    for (uint32_t i = 0; i < cl->n; i++) {
        s->one[i] = (cli_scrape_one){.s = s, .i = i};
        if (cl->members[i].http_port != 0 && cli_scrape_get(base, &cl->members[i], &s->one[i])) {
            s->pending++;
        }
    }
    if (event_base_once(base, -1, EV_TIMEOUT, cli_scrape_on_none, s, NULL) != 0) {
        s->pending--; /* no loop turn to release it from; done may never run */
        return TB_ERR_NOMEM;
    }
    return 0;
}

bool cli_scrape_done(const cli_scrape *s) {
    return s->started && s->pending == 0;
}

void cli_scrape_clear(cli_scrape *s) {
    for (uint32_t i = 0; i < REP_MEMBERS_MAX; i++) {
        if (s->one[i].conn != NULL) {
            evhttp_connection_free(s->one[i].conn);
            s->one[i].conn = NULL;
        }
    }
}

bool cli_proc_cpu_s(pid_t pid, double *out) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return false;
    }
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* comm may hold spaces: fields count from after its closing paren.
     * Field 3 is the state; utime and stime are fields 14 and 15. */
    const char *p = strrchr(buf, ')');
    unsigned long long utime = 0, stime = 0;
    if (p == NULL || sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime,
                            &stime) != 2) {
        return false;
    }
    long hz = sysconf(_SC_CLK_TCK);
    *out = (double)(utime + stime) / (double)(hz > 0 ? hz : 100);
    return true;
}
