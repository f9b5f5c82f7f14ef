/* twinbft: the operator CLI, one binary with subcommands in etcdctl's
 * manner. main() parses the global flags, finds the command in the tables
 * of cmd/cli/ (the longest run of words that names one) and runs it. */
#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/cli/cli.h"

static const cli_cmd *const cli_tables[] = {
    CLI_INIT_CMDS, CLI_UP_CMDS,    CLI_STATUS_CMDS, CLI_OPS_CMDS,   CLI_QUERY_CMDS,
    CLI_LOG_CMDS,  CLI_WATCH_CMDS, CLI_VERIFY_CMDS, CLI_BENCH_CMDS,
};
enum { CLI_TABLES = sizeof cli_tables / sizeof cli_tables[0] };

/* Whether c is the first command of its group (the first word of its path). */
static bool cli_group_first(const cli_cmd *c) {
    size_t len = strcspn(c->path, " ");
    for (size_t t = 0; t < CLI_TABLES; t++) {
        for (const cli_cmd *o = cli_tables[t]; o->path != NULL; o++) {
            if (o == c) {
                return true;
            }
            if (strncmp(o->path, c->path, len) == 0 && strcspn(o->path, " ") == len) {
                return false;
            }
        }
    }
    return true;
}

/* Every command, grouped by its first word in the order groups appear. */
static void cli_usage(FILE *out) {
    char line[256];
    fprintf(out, "usage: twinbft [GLOBAL FLAGS] COMMAND [ARGS] [FLAGS]\n"
                 "\n"
                 "Operates a twinbft cluster. `twinbft COMMAND --help` describes each command.\n"
                 "\n"
                 "Commands:\n");
    for (size_t t = 0; t < CLI_TABLES; t++) {
        for (const cli_cmd *g = cli_tables[t]; g->path != NULL; g++) {
            if (!cli_group_first(g)) {
                continue;
            }
            size_t len = strcspn(g->path, " ");
            for (size_t u = 0; u < CLI_TABLES; u++) {
                for (const cli_cmd *c = cli_tables[u]; c->path != NULL; c++) {
                    if (strncmp(c->path, g->path, len) == 0 && strcspn(c->path, " ") == len) {
                        cli_cmd_synopsis(c, line, sizeof line);
                        fprintf(out, "  %s\n      %s\n", line, c->summary);
                    }
                }
            }
        }
    }
    fprintf(out, "\n"
                 "Global flags (before or after the command):\n"
                 "  --cluster FILE       the cluster file (default: $TWINBFT_CLUSTER)\n"
                 "  --identity DIR       the directory holding key.pem, cert.pem and ca.pem of\n"
                 "                       who you are (default: $TWINBFT_IDENTITY)\n"
                 "  -w, --write-out FMT  output format: table (default) or json\n"
                 "  --timeout DURATION   how long to wait for the cluster, e.g. 500ms, 5s, 1m\n"
                 "                       (default 5s)\n"
                 "  -h, --help           this help\n"
                 "\n"
                 "Exit codes:\n"
                 "  0  success\n"
                 "  1  the command failed (incl. a compare-and-set conflict, an invalid\n"
                 "     operation, a missing certificate for --cert-out, a failed verify)\n"
                 "  2  bad arguments\n"
                 "  3  the cluster could not be reached (or fewer than a quorum answered)\n"
                 "  4  the cluster refused the request (permission or policy denied)\n");
}

static void cli_commands_hint(void) {
    const char *sep = "";
    fprintf(stderr, "available commands: ");
    for (size_t t = 0; t < CLI_TABLES; t++) {
        for (const cli_cmd *c = cli_tables[t]; c->path != NULL; c++) {
            fprintf(stderr, "%s%s", sep, c->path);
            sep = ", ";
        }
    }
    fprintf(stderr, " (see twinbft --help)\n");
}

/* How many leading words of argv name c's path; 0 unless all of them do. */
static int cli_match(const cli_cmd *c, int argc, char **argv) {
    const char *p = c->path;
    int words = 0;
    while (*p != '\0') {
        size_t len = strcspn(p, " ");
        if (words >= argc || strlen(argv[words]) != len || strncmp(argv[words], p, len) != 0) {
            return 0;
        }
        words++;
        p += len;
        p += *p == ' ';
    }
    return words;
}

static const cli_cmd *cli_find(int argc, char **argv, int *words) {
    const cli_cmd *best = NULL;
    *words = 0;
    for (size_t t = 0; t < CLI_TABLES; t++) {
        for (const cli_cmd *c = cli_tables[t]; c->path != NULL; c++) {
            int w = cli_match(c, argc, argv);
            if (w > *words) {
                best = c, *words = w;
            }
        }
    }
    return best;
}

/* "config" alone, "config frob" or "config --help": list the group. */
static int cli_group(int argc, char **argv) {
    size_t len = strlen(argv[0]);
    bool found = false,
         help = argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0);
    FILE *out = help ? stdout : stderr;
    for (size_t t = 0; t < CLI_TABLES; t++) {
        for (const cli_cmd *c = cli_tables[t]; c->path != NULL; c++) {
            if (strncmp(c->path, argv[0], len) == 0 && c->path[len] == ' ') {
                if (!found) {
                    if (!help) {
                        fprintf(out, "twinbft %s: unknown or missing subcommand%s%s\n", argv[0],
                                argc >= 2 ? " " : "", argc >= 2 ? argv[1] : "");
                    }
                    fprintf(out, "%s commands:\n", argv[0]);
                }
                found = true;
                char line[256];
                cli_cmd_synopsis(c, line, sizeof line);
                fprintf(out, "  twinbft %s\n      %s\n", line, c->summary);
            }
        }
    }
    if (!found) {
        fprintf(stderr, "twinbft: unknown command \"%s\"\n", argv[0]);
        cli_commands_hint();
        return CLI_EXIT_USAGE;
    }
    return help ? CLI_EXIT_OK : CLI_EXIT_USAGE;
}

/* Global flags stop at the first non-flag, the command: what follows it
 * belongs to the command (getopt's "+"). */
static int cli_parse_globals(int argc, char **argv, cli_globals *g) {
    static const struct option opts[] = {
        {"cluster", required_argument, NULL, 'c'},
        {"identity", required_argument, NULL, 'I'},
        {"write-out", required_argument, NULL, 'w'},
        {"timeout", required_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int ch = 0;
    while ((ch = getopt_long(argc, argv, "+w:h", opts, NULL)) != -1) {
        switch (ch) {
        case 'c':
            g->cluster = optarg;
            break;
        case 'I':
            g->identity = optarg;
            break;
        case 'w':
            if (strcmp(optarg, "table") != 0 && strcmp(optarg, "json") != 0) {
                fprintf(stderr, "twinbft: -w \"%s\": expected table or json\n", optarg);
                return CLI_EXIT_USAGE;
            }
            g->output = strcmp(optarg, "json") == 0 ? CLI_OUTPUT_JSON : CLI_OUTPUT_TABLE;
            break;
        case 't':
            if (cli_parse_duration(optarg, &g->timeout_ms) != 0 || g->timeout_ms == 0) {
                fprintf(stderr,
                        "twinbft: --timeout \"%s\": expected a duration above zero such as "
                        "500ms, 5s or 1m (a bare number is seconds; at most 24h)\n",
                        optarg);
                return CLI_EXIT_USAGE;
            }
            break;
        case 'h':
            cli_usage(stdout);
            return CLI_EXIT_HELP;
        default:
            return CLI_EXIT_USAGE;
        }
    }
    return CLI_EXIT_OK;
}

int main(int argc, char **argv) {
    static cli_ctx ctx; /* large (flag values); static keeps it off the stack */
    cli_globals g = {.cluster = getenv("TWINBFT_CLUSTER"),
                     .identity = getenv("TWINBFT_IDENTITY"),
                     .output = CLI_OUTPUT_TABLE,
                     .timeout_ms = CLI_TIMEOUT_MS_DEFAULT,
                     .argv0 = argv[0]};
    int words = 0;
    /* Links write to sockets a replica may have closed (twinbft.h). */
    signal(SIGPIPE, SIG_IGN);
    int rc = cli_parse_globals(argc, argv, &g);
    if (rc != CLI_EXIT_OK) {
        return rc == CLI_EXIT_HELP ? CLI_EXIT_OK : rc;
    }
    if (optind >= argc) {
        fprintf(stderr, "twinbft: no command given\n");
        cli_commands_hint();
        return CLI_EXIT_USAGE;
    }
    argc -= optind, argv += optind;
    const cli_cmd *cmd = cli_find(argc, argv, &words);
    if (cmd == NULL) {
        return cli_group(argc, argv);
    }
    ctx.g = &g;
    rc = cli_parse(&ctx, cmd, argc - words + 1, argv + words - 1);
    if (rc != CLI_EXIT_OK) {
        return rc == CLI_EXIT_HELP ? CLI_EXIT_OK : rc;
    }
    return cmd->run(&ctx);
}
