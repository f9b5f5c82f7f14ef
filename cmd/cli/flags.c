/* The CLI's flag parser: every command declares its flags in a table
 * (cli_flag), getopt_long parses them, and typed getters turn values into
 * numbers with one consistent message for what was wrong. The global flags
 * are accepted after the command too, as etcdctl does. */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/cli/cli.h"
#include "proto/tb_assert.h"

enum {
    CLI_OPT_BASE = 256, /* getopt values of a command's own flags: base + index */
    CLI_OPT_HELP = 'h',
    CLI_OPT_WRITE_OUT = 'w',
    CLI_OPT_CLUSTER = 1,
    CLI_OPT_IDENTITY,
    CLI_OPT_TIMEOUT,
    CLI_OPT_CERT_OUT,
    CLI_OPTS_COMMON = 6,
};

bool cli_join(char *out, size_t cap, const char *dir, const char *name) {
    int n = snprintf(out, cap, "%s/%s", dir, name);
    return n > 0 && (size_t)n < cap;
}

/* "500ms", "5s", "2m" or a bare number of seconds into milliseconds. */
int cli_parse_duration(const char *s, long *ms) {
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    long scale = 0;
    if (end == s || errno != 0 || v < 0) {
        return TB_ERR_INVALID;
    }
    if (strcmp(end, "ms") == 0) {
        scale = 1;
    } else if (strcmp(end, "s") == 0 || *end == '\0') {
        scale = 1000;
    } else if (strcmp(end, "m") == 0) {
        scale = 60 * 1000;
    } else if (strcmp(end, "h") == 0) {
        scale = 3600 * 1000;
    } else {
        return TB_ERR_INVALID;
    }
    if (v > CLI_TIMEOUT_MS_MAX / scale) {
        return TB_ERR_INVALID;
    }
    *ms = v * scale;
    return 0;
}

int cli_parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out) {
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (s[0] < '0' || s[0] > '9' || *end != '\0' || errno != 0 || v < lo || v > hi) {
        return TB_ERR_INVALID;
    }
    *out = (uint64_t)v;
    return 0;
}

int cli_parse_i64(const char *s, int64_t *out) {
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end != '\0' || errno != 0 || isspace((unsigned char)s[0])) {
        return TB_ERR_INVALID;
    }
    *out = (int64_t)v;
    return 0;
}

static void cli_vmessage(const cli_ctx *c, const char *fmt, va_list ap) {
    fprintf(stderr, "twinbft %s: ", c->cmd->path);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

int cli_usage_error(const cli_ctx *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    cli_vmessage(c, fmt, ap);
    va_end(ap);
    fprintf(stderr, "(see twinbft %s --help)\n", c->cmd->path);
    return CLI_EXIT_USAGE;
}

int cli_fail(const cli_ctx *c, int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    cli_vmessage(c, fmt, ap);
    va_end(ap);
    return code;
}

static int cli_flag_index(const cli_cmd *cmd, const char *name) {
    for (int i = 0; cmd->flags != NULL && cmd->flags[i].name != NULL; i++) {
        if (strcmp(cmd->flags[i].name, name) == 0) {
            return i;
        }
    }
    TB_ASSERT(!"flag not declared by its command");
    return -1;
}

bool cli_opt_set(const cli_ctx *c, const char *name) {
    return c->counts[cli_flag_index(c->cmd, name)] > 0;
}

uint32_t cli_opt_count(const cli_ctx *c, const char *name) {
    return c->counts[cli_flag_index(c->cmd, name)];
}

const char *cli_opt_at(const cli_ctx *c, const char *name, uint32_t i) {
    int f = cli_flag_index(c->cmd, name);
    TB_ASSERT(i < c->counts[f]);
    return c->values[f][i];
}

const char *cli_opt(const cli_ctx *c, const char *name) {
    int f = cli_flag_index(c->cmd, name);
    return c->counts[f] == 0 ? NULL : c->values[f][c->counts[f] - 1];
}

int cli_opt_u64(const cli_ctx *c, const char *name, uint64_t lo, uint64_t hi, uint64_t def,
                uint64_t *out) {
    const char *v = cli_opt(c, name);
    if (v == NULL) {
        *out = def;
        return CLI_EXIT_OK;
    }
    if (cli_parse_u64(v, lo, hi, out) != 0) {
        return cli_usage_error(c,
                               "--%s \"%s\": expected a whole number from %" PRIu64 " to %" PRIu64,
                               name, v, lo, hi);
    }
    return CLI_EXIT_OK;
}

int cli_opt_u32(const cli_ctx *c, const char *name, uint32_t hi, uint32_t def, uint32_t *out) {
    uint64_t v = 0;
    int rc = cli_opt_u64(c, name, 0, hi, def, &v);
    *out = (uint32_t)v;
    return rc;
}

int cli_opt_i64(const cli_ctx *c, const char *name, int64_t def, int64_t *out) {
    const char *v = cli_opt(c, name);
    *out = def;
    if (v != NULL && cli_parse_i64(v, out) != 0) {
        return cli_usage_error(c, "--%s \"%s\": expected a (signed 64-bit) integer", name, v);
    }
    return CLI_EXIT_OK;
}

int cli_opt_ms(const cli_ctx *c, const char *name, uint64_t def, uint64_t *out) {
    const char *v = cli_opt(c, name);
    long ms = 0;
    *out = def;
    if (v == NULL) {
        return CLI_EXIT_OK;
    }
    if (cli_parse_duration(v, &ms) != 0) {
        return cli_usage_error(c, "--%s \"%s\": expected a duration such as 500ms, 10s or 2m", name,
                               v);
    }
    *out = (uint64_t)ms;
    return CLI_EXIT_OK;
}

int cli_arg_u32(const cli_ctx *c, uint32_t i, const char *what, uint32_t hi, uint32_t *out) {
    uint64_t v = 0;
    TB_ASSERT(i < c->argc);
    if (cli_parse_u64(c->argv[i], 0, hi, &v) != 0) {
        return cli_usage_error(c, "%s \"%s\": expected a whole number from 0 to %" PRIu32, what,
                               c->argv[i], hi);
    }
    *out = (uint32_t)v;
    return CLI_EXIT_OK;
}

int cli_arg_i64(const cli_ctx *c, uint32_t i, const char *what, int64_t *out) {
    TB_ASSERT(i < c->argc);
    if (cli_parse_i64(c->argv[i], out) != 0) {
        return cli_usage_error(c, "%s \"%s\": expected a (signed 64-bit) integer", what,
                               c->argv[i]);
    }
    return CLI_EXIT_OK;
}

void cli_cmd_synopsis(const cli_cmd *cmd, char *out, size_t cap) {
    size_t used = 0;
    bool optional = (cmd->kind & CLI_CMD_ORDERED) != 0;
    int n = snprintf(out, cap, "%s%s%s", cmd->path, cmd->synopsis[0] ? " " : "", cmd->synopsis);
    used = n > 0 ? (size_t)n : 0;
    for (int i = 0; cmd->flags != NULL && cmd->flags[i].name != NULL && used < cap; i++) {
        const cli_flag *f = &cmd->flags[i];
        optional = optional || !(f->flags & CLI_FLAG_REQUIRED);
        if (f->flags & CLI_FLAG_REQUIRED) {
            n = snprintf(out + used, cap - used, " --%s %s", f->name, f->arg);
            used += n > 0 ? (size_t)n : 0;
        }
    }
    if (optional && used < cap) {
        snprintf(out + used, cap - used, " [FLAGS]");
    }
}

void cli_cmd_help(const cli_cmd *cmd, FILE *out) {
    char line[256];
    bool has_flags = cmd->flags != NULL && cmd->flags[0].name != NULL;
    cli_cmd_synopsis(cmd, line, sizeof line);
    fprintf(out, "usage: twinbft %s\n\n%s\n", line, cmd->summary);
    if (cmd->details != NULL) {
        fprintf(out, "\n%s", cmd->details);
    }
    fprintf(out, "\nFlags:\n");
    for (int i = 0; has_flags && cmd->flags[i].name != NULL; i++) {
        const cli_flag *f = &cmd->flags[i];
        char left[64];
        snprintf(left, sizeof left, "--%s%s%s", f->name, f->arg ? " " : "", f->arg ? f->arg : "");
        fprintf(out, "  %-24s %s%s%s\n", left, f->help,
                (f->flags & CLI_FLAG_REQUIRED) ? " (required)" : "",
                (f->flags & CLI_FLAG_REPEAT) ? " (repeatable)" : "");
    }
    if (cmd->kind & CLI_CMD_ORDERED) {
        fprintf(out, "  %-24s %s\n", "--cert-out FILE",
                "write the certificate (packed twinbft.Certificate) of the result to FILE;\n"
                "                           exit 1 when the result came without one");
    }
    fprintf(out, "  %-24s %s\n", "-h, --help", "this help");
    fprintf(out, "Global flags (also accepted here): -w table|json, --cluster FILE,\n"
                 "  --identity DIR, --timeout DURATION; exit codes: see twinbft --help\n");
}

/* The global flags, accepted after the command as well as before it. */
static int cli_parse_common(cli_ctx *c, int ch, const char *arg) {
    long ms = 0;
    switch (ch) {
    case CLI_OPT_WRITE_OUT:
        if (strcmp(arg, "table") != 0 && strcmp(arg, "json") != 0) {
            return cli_usage_error(c, "-w \"%s\": expected table or json", arg);
        }
        c->g->output = strcmp(arg, "json") == 0 ? CLI_OUTPUT_JSON : CLI_OUTPUT_TABLE;
        return CLI_EXIT_OK;
    case CLI_OPT_CLUSTER:
        c->g->cluster = arg;
        return CLI_EXIT_OK;
    case CLI_OPT_IDENTITY:
        c->g->identity = arg;
        return CLI_EXIT_OK;
    case CLI_OPT_TIMEOUT:
        if (cli_parse_duration(arg, &ms) != 0 || ms == 0) {
            return cli_usage_error(c,
                                   "--timeout \"%s\": expected a duration above zero such as "
                                   "500ms, 5s or 1m (a bare number is seconds; at most 24h)",
                                   arg);
        }
        c->g->timeout_ms = ms;
        return CLI_EXIT_OK;
    case CLI_OPT_CERT_OUT:
        c->cert_out = arg;
        return CLI_EXIT_OK;
    default:
        return cli_usage_error(c, "unknown flag or missing value (getopt said why above)");
    }
}

static size_t cli_options(const cli_cmd *cmd, struct option *opts) {
    size_t n = 0;
    for (int i = 0; cmd->flags != NULL && cmd->flags[i].name != NULL; i++) {
        TB_ASSERT(i < CLI_FLAGS_MAX);
        opts[n++] =
            (struct option){cmd->flags[i].name, cmd->flags[i].arg ? required_argument : no_argument,
                            NULL, CLI_OPT_BASE + i};
    }
    opts[n++] = (struct option){"help", no_argument, NULL, CLI_OPT_HELP};
    opts[n++] = (struct option){"write-out", required_argument, NULL, CLI_OPT_WRITE_OUT};
    opts[n++] = (struct option){"cluster", required_argument, NULL, CLI_OPT_CLUSTER};
    opts[n++] = (struct option){"identity", required_argument, NULL, CLI_OPT_IDENTITY};
    opts[n++] = (struct option){"timeout", required_argument, NULL, CLI_OPT_TIMEOUT};
    if (cmd->kind & CLI_CMD_ORDERED) {
        opts[n++] = (struct option){"cert-out", required_argument, NULL, CLI_OPT_CERT_OUT};
    }
    opts[n] = (struct option){NULL, 0, NULL, 0};
    return n;
}

static int cli_store_flag(cli_ctx *c, int f, const char *arg) {
    const cli_flag *fl = &c->cmd->flags[f];
    if (c->counts[f] > 0 && !(fl->flags & CLI_FLAG_REPEAT)) {
        return cli_usage_error(c, "--%s given more than once", fl->name);
    }
    if (c->counts[f] == CLI_FLAG_VALUES_MAX) {
        return cli_usage_error(c, "--%s given more than %d times", fl->name, CLI_FLAG_VALUES_MAX);
    }
    c->values[f][c->counts[f]++] = arg != NULL ? arg : "";
    return CLI_EXIT_OK;
}

static int cli_check_parsed(cli_ctx *c) {
    const cli_cmd *cmd = c->cmd;
    for (int i = 0; cmd->flags != NULL && cmd->flags[i].name != NULL; i++) {
        if ((cmd->flags[i].flags & CLI_FLAG_REQUIRED) && c->counts[i] == 0) {
            return cli_usage_error(c, "--%s %s is required", cmd->flags[i].name,
                                   cmd->flags[i].arg ? cmd->flags[i].arg : "");
        }
    }
    if (c->argc < cmd->args_min || c->argc > cmd->args_max) {
        char line[256];
        cli_cmd_synopsis(cmd, line, sizeof line);
        return cli_usage_error(c, "%s; expected: twinbft %s",
                               c->argc < cmd->args_min ? "missing arguments" : "too many arguments",
                               line);
    }
    return CLI_EXIT_OK;
}

int cli_parse(cli_ctx *c, const cli_cmd *cmd, int argc, char **argv) {
    struct option opts[CLI_FLAGS_MAX + CLI_OPTS_COMMON + 1];
    int ch = 0, rc = CLI_EXIT_OK;
    c->cmd = cmd;
    cli_options(cmd, opts);
    optind = 0; /* glibc: 0 restarts getopt for the command's arguments */
    opterr = 1;
    while ((ch = getopt_long(argc, argv, "hw:", opts, NULL)) != -1) {
        if (ch == CLI_OPT_HELP) {
            cli_cmd_help(cmd, stdout);
            return CLI_EXIT_HELP;
        }
        rc = ch >= CLI_OPT_BASE ? cli_store_flag(c, ch - CLI_OPT_BASE, optarg)
                                : cli_parse_common(c, ch, optarg);
        if (rc != CLI_EXIT_OK) {
            return rc;
        }
    }
    for (int i = optind; i < argc; i++) {
        if (c->argc == CLI_ARGS_MAX) {
            return cli_usage_error(c, "too many arguments");
        }
        c->argv[c->argc++] = argv[i];
    }
    return cli_check_parsed(c);
}

/* ---- enums ---- */

/* The part of an enum value's name after the prefix all its values share
 * (SM_REASON_ESTOP → ESTOP): computed rather than listed so that new
 * values need no CLI change. */
static size_t cli_enum_prefix(const ProtobufCEnumDescriptor *d) {
    const char *first = d->values[0].name;
    size_t len = strlen(first);
    for (unsigned i = 1; i < d->n_values; i++) {
        size_t k = 0;
        while (k < len && d->values[i].name[k] == first[k]) {
            k++;
        }
        len = k;
    }
    while (len > 0 && first[len - 1] != '_') {
        len--;
    }
    return len;
}

const char *cli_enum_name(const ProtobufCEnumDescriptor *d, int v, char *buf, size_t cap) {
    const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(d, v);
    if (ev == NULL) {
        snprintf(buf, cap, "%d", v);
        return buf;
    }
    snprintf(buf, cap, "%s", ev->name + cli_enum_prefix(d));
    return buf;
}

static bool cli_enum_matches(const char *name, const char *s) {
    for (; *name != '\0' && *s != '\0'; name++, s++) {
        char ch = *s == '-' ? '_' : (char)toupper((unsigned char)*s);
        if (ch != *name) {
            return false;
        }
    }
    return *name == '\0' && *s == '\0';
}

int cli_enum_parse(const ProtobufCEnumDescriptor *d, const char *s, int *out) {
    size_t skip = cli_enum_prefix(d);
    for (unsigned i = 0; i < d->n_values; i++) {
        if (cli_enum_matches(d->values[i].name + skip, s)) {
            *out = d->values[i].value;
            return 0;
        }
    }
    return TB_ERR_INVALID;
}

void cli_enum_names(const ProtobufCEnumDescriptor *d, char *out, size_t cap) {
    size_t skip = cli_enum_prefix(d), used = 0;
    out[0] = '\0';
    for (unsigned i = 0; i < d->n_values && used < cap; i++) {
        int n = snprintf(out + used, cap - used, "%s", i ? "|" : "");
        used += n > 0 ? (size_t)n : 0;
        for (const char *p = d->values[i].name + skip; *p != '\0' && used + 1 < cap; p++) {
            out[used++] = *p == '_' ? '-' : (char)tolower((unsigned char)*p);
        }
        out[used < cap ? used : cap - 1] = '\0';
    }
}

int cli_roles_parse(const char *s, uint32_t *out) {
    char buf[256];
    char *save = NULL;
    uint32_t roles = 0;
    if (strlen(s) >= sizeof buf) {
        return TB_ERR_INVALID;
    }
    snprintf(buf, sizeof buf, "%s", s);
    for (char *tok = strtok_r(buf, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
        int v = 0;
        if (strcmp(tok, "none") != 0 &&
            (cli_enum_parse(&twinbft__sm_role__descriptor, tok, &v) != 0 || v == 0)) {
            return TB_ERR_INVALID;
        }
        roles |= (uint32_t)v;
    }
    *out = roles;
    return 0;
}

void cli_roles_format(uint32_t roles, char *out, size_t cap) {
    static const struct {
        uint32_t bit;
        const char *name;
    } names[] = {{TWINBFT__SM_ROLE__SM_ROLE_ADMIN, "admin"},
                 {TWINBFT__SM_ROLE__SM_ROLE_OPERATOR, "operator"},
                 {TWINBFT__SM_ROLE__SM_ROLE_OWNER, "owner"},
                 {TWINBFT__SM_ROLE__SM_ROLE_NODE_AGENT, "node-agent"}};
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if ((roles & names[i].bit) && used < cap) {
            int n = snprintf(out + used, cap - used, "%s%s", used ? "," : "", names[i].name);
            used += n > 0 ? (size_t)n : 0;
        }
    }
    if (used == 0) {
        snprintf(out, cap, "none");
    }
}
