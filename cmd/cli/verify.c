/* verify: check a saved certificate with nothing but the cluster file's
 * member keys, as an actuator would (tb_cert_verify). No replica is
 * contacted. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "cmd/cli/cli.h"

static int cli_read_file(const cli_ctx *c, const char *path, uint8_t **out, size_t *len) {
    FILE *f = fopen(path, "rb");
    uint8_t *buf = NULL;
    if (f == NULL) {
        return cli_fail(c, CLI_EXIT_FAILED, "cannot open %s: %s", path, strerror(errno));
    }
    buf = malloc(CLI_FILE_BYTES_MAX + 1);
    size_t n = buf != NULL ? fread(buf, 1, CLI_FILE_BYTES_MAX + 1, f) : 0;
    bool err = ferror(f) != 0;
    fclose(f);
    if (buf == NULL || err || n > CLI_FILE_BYTES_MAX) {
        free(buf);
        return cli_fail(c, CLI_EXIT_FAILED, "%s: %s", path,
                        buf == NULL ? "out of memory"
                        : err       ? "read error"
                                    : "larger than any certificate (1 MiB)");
    }
    *out = buf;
    *len = n;
    return CLI_EXIT_OK;
}

static const char *cli_cert_error(int rc) {
    switch (rc) {
    case TB_ERR_INVALID:
        return "not a well-formed certificate";
    case TB_ERR_MISMATCH:
        return "does not match this cluster (cluster id, epoch, position, Merkle path or root)";
    case TB_ERR_QUORUM:
        return "too few valid signatures from this cluster's members";
    case TB_ERR_EXPIRED:
        return "outside its validity window";
    default:
        return tb_strerror(rc);
    }
}

/* Prints a verified certificate; returns its result's code (SM_CODE_*), or
 * -1 when the result does not decode. */
static int cli_verify_print(const cli_ctx *c, const tb_cert_info *info) {
    char line[1024];
    Twinbft__SmResult *res = twinbft__sm_result__unpack(NULL, info->result_len, info->result);
    if (res != NULL) {
        cli_result_line(res, info->seq, line, sizeof line);
    } else {
        snprintf(line, sizeof line, "(result does not decode)");
    }
    if (c->g->output == CLI_OUTPUT_JSON) {
        json_object *o = json_object_new_object();
        json_object_object_add(o, "valid", json_object_new_boolean(1));
        json_object_object_add(o, "seq", json_object_new_uint64(info->seq));
        json_object_object_add(o, "index", json_object_new_int64(info->index));
        json_object_object_add(o, "count", json_object_new_int64(info->count));
        json_object_object_add(o, "client", json_object_new_string(info->client));
        json_object_object_add(o, "number", json_object_new_uint64(info->number));
        json_object_object_add(o, "timestamp_ms", json_object_new_uint64(info->timestamp_ms));
        json_object_object_add(o, "not_before_ms", json_object_new_uint64(info->not_before_ms));
        json_object_object_add(o, "expires_at_ms", json_object_new_uint64(info->expires_at_ms));
        json_object_object_add(o, "result", res != NULL ? cli_json_message(&res->base) : NULL);
        cli_json_print(o);
    } else {
        printf("valid: seq %" PRIu64 " index %" PRIu32 " of %" PRIu32
               ", client %s (request %" PRIu64 ")\n",
               info->seq, info->index, info->count, info->client, info->number);
        printf("  result: %s\n", line);
        printf("  validity: %" PRIu64 "..%" PRIu64 " ms (consensus time)\n", info->not_before_ms,
               info->expires_at_ms);
    }
    int code = res != NULL ? (int)res->code : -1;
    if (res != NULL) {
        twinbft__sm_result__free_unpacked(res, NULL);
    }
    return code;
}

static int cli_verify(cli_ctx *c) {
    cli_conn k;
    tb_cert_info info;
    uint8_t *buf = NULL;
    size_t len = 0;
    uint64_t now_ms = 0;
    memset(&info, 0, sizeof info);
    int rc = cli_conn_load(c, &k);
    rc = rc ? rc : cli_read_file(c, c->argv[0], &buf, &len);
    if (rc == CLI_EXIT_OK && cli_opt_set(c, "fresh")) {
        struct timespec ts = {0};
        clock_gettime(CLOCK_REALTIME, &ts);
        now_ms = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
    }
    if (rc == CLI_EXIT_OK) {
        int vrc = tb_cert_verify(&k.cfg, buf, len, now_ms, &info);
        if (vrc == 0) {
            /* A certified denial is genuine but is not a command to carry out:
             * `verify F && act` must not act on it. */
            int code = cli_verify_print(c, &info);
            if (code != (int)TWINBFT__SM_CODE__SM_CODE_OK) {
                rc = cli_fail(c, CLI_EXIT_DENIED,
                              "%s: a genuine certificate, but of a %s result: not a command",
                              c->argv[0], code < 0 ? "malformed" : "refused");
            }
        } else {
            rc = cli_fail(c, CLI_EXIT_FAILED, "%s: invalid: %s", c->argv[0], cli_cert_error(vrc));
        }
    }
    tb_cert_info_clear(&info);
    free(buf);
    cli_conn_close(&k);
    return rc;
}

static const cli_flag cli_verify_flags[] = {
    {"fresh", NULL, 0, "also require the validity window to contain the current time"},
    {NULL, NULL, 0, NULL},
};

const cli_cmd CLI_VERIFY_CMDS[] = {
    {"verify", "FILE", 1, 1, "Check a saved certificate (--cert-out) against the cluster's keys.",
     "Needs only --cluster (the members' certificates); contacts no replica.\n"
     "Exit 0 valid (prints seq, client and result), 1 invalid (prints why), 4 a genuine\n"
     "certificate of a denied, conflicting or invalid result (not a command to carry out).\n",
     cli_verify_flags, 0, cli_verify},
    {NULL, NULL, 0, 0, NULL, NULL, NULL, 0, NULL},
};
