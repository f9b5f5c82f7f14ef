/* twinbft-sim: seeded, deterministic simulation of a twinbft cluster on the
 * real consensus core (see tests/sim/sim.h). */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "consensus/pbft.h"
#include "proto/hex.h"
#include "proto/tb_err.h"
#include "tests/sim/sim.h"

enum { EXIT_FAILED = 1, EXIT_USAGE = 2 };

static void usage(FILE *out) {
    fprintf(out,
            "usage: twinbft-sim --seeds N [--seed-start S] [--replicas R] [--byzantine B]\n"
            "                   [--faults LIST|all|none] [--inject-bug NAME] [--clients C]\n"
            "                   [--requests M] [--crypto fast|ed25519] [--app twins|counter]\n"
            "                   [--censor] [--keep-going] [--verbose] [--narrate]\n"
            "\n"
            "Runs seeds S..S+N-1. Each seed is one whole run: R replicas on the real PBFT core,\n"
            "C clients issuing M requests each, simulated clock, network and durable storage,\n"
            "and one PRNG seeded with the seed behind every choice, so a seed replays exactly.\n"
            "\n"
            "  --seeds N         number of seeds (default 1)\n"
            "  --seed-start S    first seed (default 1)\n"
            "  --replicas R      replicas, 1 or 4..%d (default 4)\n"
            "  --byzantine B     Byzantine replicas, at most f = (R-1)/3 (default f). Each is\n"
            "                    either a pair of twins sharing its identity and key, fed by a\n"
            "                    changing split of its peers, or a replica that mutates what it\n"
            "                    sends (view/seq +-1, stale digests, rewritten batches, omission\n"
            "                    to some receivers, bad snapshots), re-signed with its own key.\n"
            "                    Half the seeds make the view-0 primary Byzantine. When crashes\n"
            "                    are on and B = f, one seed in four runs B-1 so that a correct\n"
            "                    replica can crash: at most f replicas are ever faulty at once\n"
            "                    (R = 1: the lone replica crashes and restarts too).\n"
            "                    Half the Byzantine replicas also censor client c0: they never\n"
            "                    take its requests, so as primary they order everyone else's.\n"
            "  --censor          every Byzantine replica only censors c0 (no other misdeed),\n"
            "                    and replica 0, the view-0 primary, is one of them\n"
            "  --faults LIST     comma list of drop,delay,dup,reorder,partition,crash,skew, or\n"
            "                    all (default) or none. Faults run from the start until a heal\n"
            "                    time drawn per seed (3-8 s of simulated time); then the network\n"
            "                    heals and crashed replicas restart. A crash may also fall\n"
            "                    between a replica's early votes and their commit.\n"
            "  --inject-bug NAME run the core with a planted bug: quorum-2f, vc-drop-prepared,\n"
            "                    no-dedup, skip-ckpt-verify, stale-view, no-abstain, timer-reset,\n"
            "                    climb-alone, relay-trust, skip-chunk-verify. The run stops at\n"
            "                    the first failing\n"
            "                    seed (unless --keep-going).\n"
            "  --keep-going      with --inject-bug, run every seed (to see all it breaks)\n"
            "  --clients C       clients (default 4, at most %d)\n"
            "  --requests M      requests per client (default 25)\n"
            "  --crypto SCHEME   fast (default: SHA-256 keyed signatures) or ed25519\n"
            "  --app APP         twins (default): the real orchestration state machine, one\n"
            "                    LMDB store per replica under $TMPDIR, fed a random twin\n"
            "                    workload (registry, placement, scaling, config, actuation,\n"
            "                    e-stop, shadow, ACL; client c0 is the bootstrap admin);\n"
            "                    counter: sixteen counters, a faster stand-in\n"
            "  --verbose         print every event and, per seed, trace=<hex>: a SHA-256 over\n"
            "                    the whole event trace (the same seed gives the same hash)\n"
            "  --narrate         print what matters: views, commits, checkpoints, faults,\n"
            "                    Byzantine actions, clients\n"
            "\n"
            "Checked after every step: agreement (same batch and state per seq on correct\n"
            "replicas), validity (only issued requests, each executed once), stable checkpoint\n"
            "digests agree, every reply a client accepted matches the committed history,\n"
            "no correct replica signs two digests for one view and seq (equivocation),\n"
            "and a restarted correct replica accepts what it was told to persist.\n"
            "Liveness: every client must finish all its requests within %d s of simulated\n"
            "time after the faults stop, and no request may wait more than %d s (from its\n"
            "sending or the heal, whichever is later; %d s in a run without faults) while\n"
            "a later request of another client executes (starvation), or the seed is\n"
            "stuck. Two seconds after the last client finished, every correct replica must\n"
            "have executed as far as the furthest, and be in the view the others work in\n"
            "(or waiting in the change to the next one), or the seed is stuck.\n"
            "\n"
            "For each failing seed it prints FAIL and the command that replays it; the last\n"
            "line is \"seeds=N violations=V stuck=S\". Exit status: 0 when V = S = 0, 1\n"
            "otherwise, 2 for bad arguments. A seed that aborts (a failed assertion in the\n"
            "core) prints its FAIL and replay lines and counts as a violation.\n",
            PBFT_REPLICAS_MAX, SIM_CLIENTS_MAX, SIM_LIVENESS_BOUND_MS / 1000,
            (int)(SIM_STARVE_MS / 1000), (int)(SIM_STARVE_CALM_MS / 1000));
}

static int parse_u64(const char *opt, const char *s, uint64_t max, uint64_t *out) {
    char *end = NULL;
    errno = 0;
    if (s[0] < '0' || s[0] > '9') {
        goto bad;
    }
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v > max) {
        goto bad;
    }
    *out = v;
    return 0;
bad:
    fprintf(stderr, "twinbft-sim: %s: \"%s\" is not a number in 0..%" PRIu64 "\n", opt, s, max);
    return -1;
}

typedef struct cli {
    uint64_t seeds, seed_start;
    uint64_t replicas, byzantine, clients, requests;
    bool byzantine_set;
    uint32_t faults;
    const char *bug_name;
    bool keep_going;
    sim_options opt;
} cli;

enum {
    OPT_SEEDS = 256,
    OPT_SEED_START,
    OPT_REPLICAS,
    OPT_BYZANTINE,
    OPT_FAULTS,
    OPT_BUG,
    OPT_CLIENTS,
    OPT_REQUESTS,
    OPT_CRYPTO,
    OPT_APP,
    OPT_VERBOSE,
    OPT_NARRATE,
    OPT_KEEP_GOING,
    OPT_CENSOR,
    OPT_HELP,
};

static const struct option long_opts[] = {
    {"seeds", required_argument, NULL, OPT_SEEDS},
    {"seed-start", required_argument, NULL, OPT_SEED_START},
    {"replicas", required_argument, NULL, OPT_REPLICAS},
    {"byzantine", required_argument, NULL, OPT_BYZANTINE},
    {"faults", required_argument, NULL, OPT_FAULTS},
    {"inject-bug", required_argument, NULL, OPT_BUG},
    {"clients", required_argument, NULL, OPT_CLIENTS},
    {"requests", required_argument, NULL, OPT_REQUESTS},
    {"crypto", required_argument, NULL, OPT_CRYPTO},
    {"app", required_argument, NULL, OPT_APP},
    {"verbose", no_argument, NULL, OPT_VERBOSE},
    {"narrate", no_argument, NULL, OPT_NARRATE},
    {"keep-going", no_argument, NULL, OPT_KEEP_GOING},
    {"censor", no_argument, NULL, OPT_CENSOR},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

/* One option; 1 when the program should stop with status 0 (help), -1 on error. */
static int parse_one(cli *c, int ch, const char *arg) {
    switch (ch) {
    case OPT_SEEDS:
        return parse_u64("--seeds", arg, UINT32_MAX, &c->seeds);
    case OPT_SEED_START:
        return parse_u64("--seed-start", arg, UINT64_MAX / 2, &c->seed_start);
    case OPT_REPLICAS:
        return parse_u64("--replicas", arg, PBFT_REPLICAS_MAX, &c->replicas);
    case OPT_BYZANTINE:
        c->byzantine_set = true;
        return parse_u64("--byzantine", arg, PBFT_REPLICAS_MAX, &c->byzantine);
    case OPT_CLIENTS:
        return parse_u64("--clients", arg, SIM_CLIENTS_MAX, &c->clients);
    case OPT_REQUESTS:
        return parse_u64("--requests", arg, SIM_REQUESTS_MAX, &c->requests);
    case OPT_FAULTS:
        if (sim_faults_parse(arg, &c->faults) != 0) {
            fprintf(stderr,
                    "twinbft-sim: --faults: \"%s\" is not a list of drop,delay,dup,reorder,"
                    "partition,crash,skew (or all, none)\n",
                    arg);
            return -1;
        }
        return 0;
    case OPT_BUG:
        c->bug_name = arg;
        c->opt.bugs = sim_bug_parse(arg);
        if (c->opt.bugs == 0) {
            fprintf(stderr,
                    "twinbft-sim: --inject-bug: unknown bug \"%s\" (expected quorum-2f, "
                    "vc-drop-prepared, no-dedup, skip-ckpt-verify, stale-view, no-abstain, "
                    "timer-reset, climb-alone, relay-trust or skip-chunk-verify)\n",
                    arg);
            return -1;
        }
        return 0;
    case OPT_CRYPTO:
        if (strcmp(arg, "fast") != 0 && strcmp(arg, "ed25519") != 0) {
            fprintf(stderr, "twinbft-sim: --crypto: \"%s\" is neither fast nor ed25519\n", arg);
            return -1;
        }
        c->opt.ed25519 = strcmp(arg, "ed25519") == 0;
        return 0;
    case OPT_APP:
        if (strcmp(arg, "twins") != 0 && strcmp(arg, "counter") != 0) {
            fprintf(stderr, "twinbft-sim: --app: \"%s\" is neither twins nor counter\n", arg);
            return -1;
        }
        c->opt.counter_app = strcmp(arg, "counter") == 0;
        return 0;
    case OPT_VERBOSE:
        c->opt.verbose = true;
        return 0;
    case OPT_NARRATE:
        c->opt.narrate = true;
        return 0;
    case OPT_KEEP_GOING:
        c->keep_going = true;
        return 0;
    case OPT_CENSOR:
        c->opt.censor_only = true;
        return 0;
    case OPT_HELP:
        usage(stdout);
        return 1;
    default:
        return -1;
    }
}

static int validate(cli *c) {
    /* The cluster sizes a cluster file accepts (replica/config.h): one
     * replica, or enough for f >= 1. */
    if (c->replicas == 0 || c->replicas == 2 || c->replicas == 3) {
        fprintf(stderr,
                "twinbft-sim: --replicas: %" PRIu64 " is not a cluster size twinbft runs (1, "
                "or at least 4 so that f >= 1)\n",
                c->replicas);
        return -1;
    }
    uint64_t f = pbft_f((uint32_t)c->replicas);
    if (!c->byzantine_set) {
        c->byzantine = f;
    }
    if (c->byzantine > f) {
        fprintf(stderr,
                "twinbft-sim: --byzantine: %" PRIu64 " is more than f = %" PRIu64 " for %" PRIu64
                " replicas (at most (R-1)/3)\n",
                c->byzantine, f, c->replicas);
        return -1;
    }
    if (c->seeds == 0 || c->clients == 0 || c->requests == 0) {
        fprintf(stderr, "twinbft-sim: --seeds, --clients and --requests must be at least 1\n");
        return -1;
    }
    return 0;
}

static int parse_args(int argc, char **argv, cli *c) {
    int ch;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, "", long_opts, NULL)) != -1) {
        if (ch == '?') {
            fprintf(stderr, "twinbft-sim: unknown option or missing value: %s (see --help)\n",
                    argv[optind - 1]);
            return -1;
        }
        int rc = parse_one(c, ch, optarg);
        if (rc != 0) {
            return rc;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "twinbft-sim: unexpected argument \"%s\" (see --help)\n", argv[optind]);
        return -1;
    }
    return validate(c);
}

/* The command that replays one seed. */
static void format_replay(const cli *c, uint64_t seed, char *out, size_t cap) {
    char faults[96], workload[64] = "", bug[64] = "";
    sim_faults_format(c->faults, faults, sizeof faults);
    if (c->clients != 4 || c->requests != 25) {
        snprintf(workload, sizeof workload, " --clients %" PRIu64 " --requests %" PRIu64,
                 c->clients, c->requests);
    }
    if (c->bug_name != NULL) {
        snprintf(bug, sizeof bug, " --inject-bug %s", c->bug_name);
    }
    snprintf(out, cap,
             "replay: twinbft-sim --seed-start %" PRIu64 " --seeds 1 --replicas %" PRIu64
             " --byzantine %" PRIu64 " --faults %s%s%s%s%s%s --verbose",
             seed, c->replicas, c->byzantine, faults, workload,
             c->opt.ed25519 ? " --crypto ed25519" : "", c->opt.counter_app ? " --app counter" : "",
             c->opt.censor_only ? " --censor" : "", bug);
}

/* A core assertion (or a sanitizer report) aborts the process in the middle
 * of a seed; say which seed and how to replay it before dying. */
static char abort_note[1024];
static size_t abort_note_len;

static void on_abort(int sig) {
    (void)sig;
    if (abort_note_len > 0) {
        ssize_t w = write(STDOUT_FILENO, abort_note, abort_note_len);
        (void)w;
    }
    /* Exit like any failing run (status 1) rather than die by the signal: the
     * seed is reported, and a test harness reads the summary line. A debugger
     * still stops at the abort itself. */
    _exit(EXIT_FAILED);
}

/* Prepared before each seed: the FAIL line, the replay command and the
 * summary line as it will stand if this seed aborts (counted as a
 * violation: the core stopped on a broken invariant of its own). */
static void arm_abort_note(const cli *c, uint64_t seed, uint64_t run, uint64_t violations,
                           uint64_t stuck) {
    char replay[512];
    format_replay(c, seed, replay, sizeof replay);
    int n = snprintf(abort_note, sizeof abort_note,
                     "\nFAIL seed=%" PRIu64 " aborted: the process died inside the run (see "
                     "stderr)\n%s\nseeds=%" PRIu64 " violations=%" PRIu64 " stuck=%" PRIu64 "\n",
                     seed, replay, run + 1, violations + 1, stuck);
    abort_note_len = n > 0 && (size_t)n < sizeof abort_note ? (size_t)n : 0;
}

int main(int argc, char **argv) {
    cli c = {.seeds = 1,
             .seed_start = 1,
             .replicas = 4,
             .clients = 4,
             .requests = 25,
             .faults = SIM_FAULT_ALL};
    int rc = parse_args(argc, argv, &c);
    if (rc != 0) {
        return rc > 0 ? 0 : EXIT_USAGE;
    }
    c.opt.replicas = (uint32_t)c.replicas;
    c.opt.byzantine = (uint32_t)c.byzantine;
    c.opt.clients = (uint32_t)c.clients;
    c.opt.requests = (uint32_t)c.requests;
    c.opt.faults = c.faults;
    c.opt.out = stdout;
    if (c.opt.verbose || c.opt.narrate) {
        /* Keep what was printed if a seed aborts. */
        setvbuf(stdout, NULL, _IOLBF, 0);
    }
    signal(SIGABRT, on_abort);
    uint64_t run = 0, violations = 0, stuck = 0;
    for (uint64_t i = 0; i < c.seeds; i++) {
        uint64_t seed = c.seed_start + i;
        sim_options opt = c.opt;
        opt.seed = seed;
        sim_result res;
        arm_abort_note(&c, seed, run, violations, stuck);
        rc = sim_run(&opt, &res);
        if (rc != 0) {
            fprintf(stderr, "twinbft-sim: seed %" PRIu64 ": cannot set up the world: %s\n", seed,
                    tb_strerror(rc));
            return EXIT_FAILED;
        }
        run++;
        if (opt.verbose || opt.narrate) {
            printf("seed=%" PRIu64 " %s events=%" PRIu64 " sim_ms=%" PRIu64 " completed=%" PRIu64
                   " max_view=%" PRIu64 " max_seq=%" PRIu64 "\n",
                   seed,
                   res.violation ? "violation"
                   : res.stuck   ? "stuck"
                                 : "ok",
                   res.events, res.sim_ms, res.completed, res.max_view, res.max_seq);
        }
        if (opt.verbose) {
            char hex[2 * PROTO_DIGEST_BYTES + 1];
            proto_hex(res.trace, sizeof res.trace, hex);
            printf("trace=%s\n", hex);
        }
        if (res.violation || res.stuck) {
            violations += res.violation;
            stuck += res.stuck;
            char replay[512];
            format_replay(&c, seed, replay, sizeof replay);
            printf("FAIL seed=%" PRIu64 " %s\n%s\n", seed, res.what, replay);
            fflush(stdout);
            if (c.bug_name != NULL && !c.keep_going) {
                break;
            }
        }
    }
    printf("seeds=%" PRIu64 " violations=%" PRIu64 " stuck=%" PRIu64 "\n", run, violations, stuck);
    return violations == 0 && stuck == 0 ? 0 : EXIT_FAILED;
}
