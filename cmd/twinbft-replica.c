/* twinbft-replica --config FILE --id N --data DIR: one replica of a cluster. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "replica/daemon.h"

static void usage(FILE *out) {
    fprintf(out,
            "usage: twinbft-replica --config FILE --id N --data DIR [--key FILE]\n"
            "                       [--log-level error|warn|info|debug]\n"
            "\n"
            "Runs replica N of the cluster described by FILE (see `twinbft cluster init`),\n"
            "keeping its log and state in DIR. Its key defaults to key.pem next to its\n"
            "certificate. SIGTERM or SIGINT shut it down cleanly.\n"
            "Exit codes: 0 clean shutdown, 1 failure (start-up or storage), 2 bad arguments.\n");
#if TWINBFT_FAULT_INJECTION
    fprintf(out, "\nFault-injection build (tests only):\n"
                 "  --byzantine censor:PRINCIPAL   never take that client's requests\n");
#endif
}

static int parse_level(const char *s) {
    static const char *const names[] = {"error", "warn", "info", "debug"};
    for (int i = 0; i < 4; i++) {
        if (strcmp(s, names[i]) == 0) {
            return i;
        }
    }
    return -1;
}

int main(int argc, char **argv) {
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"id", required_argument, NULL, 'i'},
        {"data", required_argument, NULL, 'd'},
        {"key", required_argument, NULL, 'k'},
        {"log-level", required_argument, NULL, 'l'},
        {"help", no_argument, NULL, 'h'},
#if TWINBFT_FAULT_INJECTION
        {"byzantine", required_argument, NULL, 'b'},
#endif
        {NULL, 0, NULL, 0}
    };
    rep_daemon_options o = {.log_level = 2};
    long id = -1;
    int c;
    while ((c = getopt_long(argc, argv, "c:i:d:k:l:h", opts, NULL)) != -1) {
        char *end = NULL;
        switch (c) {
        case 'c':
            o.config_path = optarg;
            break;
        case 'i':
            id = strtol(optarg, &end, 10);
            if (*optarg == '\0' || *end != '\0' || id < 0 || id > 63) {
                fprintf(stderr, "twinbft-replica: --id \"%s\" is not a replica id (0..63)\n",
                        optarg);
                return 2;
            }
            break;
        case 'd':
            o.data_dir = optarg;
            break;
        case 'k':
            o.key_path = optarg;
            break;
        case 'l':
            o.log_level = parse_level(optarg);
            if (o.log_level < 0) {
                fprintf(stderr, "twinbft-replica: --log-level \"%s\": use error|warn|info|debug\n",
                        optarg);
                return 2;
            }
            break;
        case 'h':
            usage(stdout);
            return 0;
#if TWINBFT_FAULT_INJECTION
        case 'b':
            if (strncmp(optarg, "censor:", 7) != 0 || optarg[7] == '\0') {
                fprintf(stderr, "twinbft-replica: --byzantine \"%s\": use censor:PRINCIPAL\n",
                        optarg);
                return 2;
            }
            o.censor = optarg + 7;
            break;
#endif
        default:
            usage(stderr);
            return 2;
        }
    }
    if (o.config_path == NULL || id < 0 || o.data_dir == NULL || optind != argc) {
        fprintf(stderr, "twinbft-replica: --config, --id and --data are required\n");
        usage(stderr);
        return 2;
    }
    o.id = (uint32_t)id;
    return rep_daemon_run(&o) == 0 ? 0 : 1;
}
