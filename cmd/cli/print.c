/* Results for people (table: one headline and "field: value" lines) and
 * for programs (json: one object per line). Both walk protobuf-c's
 * descriptors, so every payload of proto/sm.proto prints without a printer
 * of its own; json-c does the escaping. JSON follows protobuf's JSON
 * mapping where it matters to scripts: snake_case field names as in the
 * .proto, enum values by (short) name, bytes in base64. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <openssl/evp.h>

#include "cmd/cli/cli.h"
#include "proto/hex.h"
#include "proto/tb_assert.h"

enum {
    CLI_NAME_BYTES = 64,      /* an enum value's short name */
    CLI_TEXT_BYTES_MAX = 512, /* bytes shown in text output before "..." */
    CLI_LINE_BYTES = 1024,
};

const char *cli_oneof_name(const ProtobufCMessage *m) {
    const ProtobufCMessageDescriptor *d = m->descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
            *(const uint32_t *)((const char *)m + f->quantifier_offset) == f->id) {
            return f->name;
        }
    }
    return "none";
}

static size_t cli_elem_size(const ProtobufCFieldDescriptor *f) {
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_DOUBLE:
        return 8;
    case PROTOBUF_C_TYPE_BOOL:
        return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_STRING:
        return sizeof(char *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(ProtobufCMessage *);
    default:
        return 4;
    }
}

/* Whether a (non-repeated) field is set: the active member of a oneof, or
 * a present sub-message; proto3 scalars always are. */
static bool cli_field_present(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f) {
    const char *base = (const char *)m;
    if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
        *(const uint32_t *)(base + f->quantifier_offset) != f->id) {
        return false;
    }
    return f->type != PROTOBUF_C_TYPE_MESSAGE || *(void *const *)(base + f->offset) != NULL;
}

static json_object *cli_json_bytes(const ProtobufCBinaryData *b) {
    size_t cap = 4 * ((b->len + 2) / 3) + 1;
    char *out = malloc(cap);
    if (out == NULL) {
        return NULL;
    }
    EVP_EncodeBlock((unsigned char *)out, b->data, (int)b->len);
    json_object *o = json_object_new_string(out);
    free(out);
    return o;
}

static json_object *cli_json_value(const ProtobufCFieldDescriptor *f, const void *p) {
    char name[CLI_NAME_BYTES], roles[CLI_NAME_BYTES];
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        return json_object_new_int(*(const int32_t *)p);
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        if (strcmp(f->name, "roles") == 0) {
            cli_roles_format(*(const uint32_t *)p, roles, sizeof roles);
            return json_object_new_string(roles);
        }
        return json_object_new_int64(*(const uint32_t *)p);
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        return json_object_new_int64(*(const int64_t *)p);
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return json_object_new_uint64(*(const uint64_t *)p);
    case PROTOBUF_C_TYPE_FLOAT:
        return json_object_new_double(*(const float *)p);
    case PROTOBUF_C_TYPE_DOUBLE:
        return json_object_new_double(*(const double *)p);
    case PROTOBUF_C_TYPE_BOOL:
        return json_object_new_boolean(*(const protobuf_c_boolean *)p);
    case PROTOBUF_C_TYPE_ENUM:
        return json_object_new_string(
            cli_enum_name(f->descriptor, *(const int *)p, name, sizeof name));
    case PROTOBUF_C_TYPE_STRING:
        return json_object_new_string(*(char *const *)p ? *(char *const *)p : "");
    case PROTOBUF_C_TYPE_BYTES:
        return cli_json_bytes((const ProtobufCBinaryData *)p);
    case PROTOBUF_C_TYPE_MESSAGE:
        return cli_json_message(*(const ProtobufCMessage *const *)p);
    }
    return NULL;
}

json_object *cli_json_message(const ProtobufCMessage *m) {
    const ProtobufCMessageDescriptor *d = m->descriptor;
    const char *base = (const char *)m;
    json_object *o = json_object_new_object();
    for (unsigned i = 0; o != NULL && i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)(base + f->quantifier_offset);
            const char *arr = *(char *const *)(base + f->offset);
            json_object *a = json_object_new_array_ext((int)n);
            for (size_t k = 0; a != NULL && k < n; k++) {
                json_object_array_add(a, cli_json_value(f, arr + k * cli_elem_size(f)));
            }
            json_object_object_add(o, f->name, a);
        } else if (cli_field_present(m, f)) {
            json_object_object_add(o, f->name, cli_json_value(f, base + f->offset));
        }
    }
    return o;
}

void cli_json_print(json_object *obj) {
    puts(json_object_to_json_string_ext(obj,
                                        JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
    fflush(stdout);
    json_object_put(obj);
}

/* Bytes for people: as text when printable, else hex. */
static void cli_print_bytes(FILE *out, const ProtobufCBinaryData *b) {
    bool text = true;
    for (size_t i = 0; i < b->len && text; i++) {
        text = b->data[i] >= 0x20 && b->data[i] < 0x7f;
    }
    size_t n = b->len < CLI_TEXT_BYTES_MAX ? b->len : CLI_TEXT_BYTES_MAX;
    if (text) {
        fprintf(out, "%.*s", (int)n, (const char *)b->data);
    } else {
        fputs("0x", out);
        for (size_t i = 0; i < n; i++) {
            fprintf(out, "%02x", b->data[i]);
        }
    }
    fputs(n < b->len ? "...\n" : "\n", out);
}

/* Zero, false and empty values are left out of text output: proto3 cannot
 * tell them from absent, and people read the rest faster without them. */
static bool cli_value_empty(const ProtobufCFieldDescriptor *f, const void *p) {
    switch (f->type) {
    case PROTOBUF_C_TYPE_MESSAGE:
        return false;
    case PROTOBUF_C_TYPE_STRING:
        return *(char *const *)p == NULL || **(char *const *)p == '\0';
    case PROTOBUF_C_TYPE_BYTES:
        return ((const ProtobufCBinaryData *)p)->len == 0;
    case PROTOBUF_C_TYPE_BOOL:
        return !*(const protobuf_c_boolean *)p;
    default:
        return cli_elem_size(f) == 8 ? *(const uint64_t *)p == 0 : *(const uint32_t *)p == 0;
    }
}

static void cli_print_value(FILE *out, const ProtobufCFieldDescriptor *f, const void *p,
                            int indent) {
    char name[CLI_NAME_BYTES];
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        fprintf(out, "%" PRId32 "\n", *(const int32_t *)p);
        break;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        if (strcmp(f->name, "roles") == 0) {
            cli_roles_format(*(const uint32_t *)p, name, sizeof name);
            fprintf(out, "%s\n", name);
        } else {
            fprintf(out, "%" PRIu32 "\n", *(const uint32_t *)p);
        }
        break;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        fprintf(out, "%" PRId64 "\n", *(const int64_t *)p);
        break;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        fprintf(out, "%" PRIu64 "\n", *(const uint64_t *)p);
        break;
    case PROTOBUF_C_TYPE_BOOL:
        fprintf(out, "%s\n", *(const protobuf_c_boolean *)p ? "yes" : "no");
        break;
    case PROTOBUF_C_TYPE_ENUM:
        fprintf(out, "%s\n", cli_enum_name(f->descriptor, *(const int *)p, name, sizeof name));
        break;
    case PROTOBUF_C_TYPE_STRING:
        fprintf(out, "%s\n", *(char *const *)p);
        break;
    case PROTOBUF_C_TYPE_BYTES:
        cli_print_bytes(out, (const ProtobufCBinaryData *)p);
        break;
    case PROTOBUF_C_TYPE_MESSAGE:
        fputc('\n', out);
        cli_print_message(out, *(const ProtobufCMessage *const *)p, indent + 2);
        break;
    default:
        fprintf(out, "(not shown)\n");
        break;
    }
}

void cli_print_message(FILE *out, const ProtobufCMessage *m, int indent) {
    const ProtobufCMessageDescriptor *d = m->descriptor;
    const char *base = (const char *)m;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)(base + f->quantifier_offset);
            const char *arr = *(char *const *)(base + f->offset);
            for (size_t k = 0; k < n; k++) {
                fprintf(out, "%*s%s[%zu]:%s", indent, "", f->name, k,
                        f->type == PROTOBUF_C_TYPE_MESSAGE ? "" : " ");
                cli_print_value(out, f, arr + k * cli_elem_size(f), indent);
            }
        } else if (cli_field_present(m, f) && !cli_value_empty(f, base + f->offset)) {
            fprintf(out, "%*s%s:%s", indent, "", f->name,
                    f->type == PROTOBUF_C_TYPE_MESSAGE ? "" : " ");
            cli_print_value(out, f, base + f->offset, indent);
        }
    }
}

int cli_code_exit(int code) {
    switch (code) {
    case TWINBFT__SM_CODE__SM_CODE_OK:
        return CLI_EXIT_OK;
    case TWINBFT__SM_CODE__SM_CODE_DENIED:
        return CLI_EXIT_DENIED;
    default:
        return CLI_EXIT_FAILED; /* a CAS conflict, an invalid op, an unknown code */
    }
}

void cli_result_line(const Twinbft__SmResult *res, uint64_t seq, char *out, size_t cap) {
    char reason[CLI_NAME_BYTES], code[CLI_NAME_BYTES];
    const Twinbft__SmCommand *cmd =
        res->payload_case == TWINBFT__SM_RESULT__PAYLOAD_COMMAND ? res->command : NULL;
    cli_enum_name(&twinbft__sm_reason__descriptor, res->reason, reason, sizeof reason);
    cli_enum_name(&twinbft__sm_code__descriptor, res->code, code, sizeof code);
    for (char *p = code; *p != '\0'; p++) {
        *p = (char)(*p + ('a' - 'A') * (*p >= 'A' && *p <= 'Z'));
    }
    if (res->code == TWINBFT__SM_CODE__SM_CODE_OK && cmd != NULL) {
        snprintf(out, cap, "approved: %s%s %s=%" PRId64 " (seq %" PRIu64 ")",
                 cmd->safe_state ? "safe state " : "", cmd->twin, cmd->property, cmd->value, seq);
    } else if (res->code == TWINBFT__SM_CODE__SM_CODE_OK) {
        snprintf(out, cap, "ok%s%s (seq %" PRIu64 ")", res->detail[0] ? ": " : "", res->detail,
                 seq);
    } else {
        snprintf(out, cap, "%s: %s%s%s%s", code, reason, res->detail[0] ? " (" : "", res->detail,
                 res->detail[0] ? ")" : "");
    }
}

/* The one set payload of a result, for text output. */
static const ProtobufCMessage *cli_result_payload(const Twinbft__SmResult *res) {
    const ProtobufCMessageDescriptor *d = res->base.descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (f->type == PROTOBUF_C_TYPE_MESSAGE && cli_field_present(&res->base, f)) {
            return *(const ProtobufCMessage *const *)((const char *)res + f->offset);
        }
    }
    return NULL;
}

int cli_print_result(const cli_ctx *c, const Twinbft__SmOp *op, const tb_owned *r) {
    char line[CLI_LINE_BYTES];
    Twinbft__SmResult *res = twinbft__sm_result__unpack(NULL, r->data_len, r->data);
    if (res == NULL) {
        return cli_fail(c, CLI_EXIT_FAILED, "the cluster's result does not decode (%zu bytes)",
                        r->data_len);
    }
    if (res->code == TWINBFT__SM_CODE__SM_CODE_OK && res->detail[0] == '\0' &&
        res->payload_case != TWINBFT__SM_RESULT__PAYLOAD_COMMAND) {
        /* Say what succeeded when the state machine left no detail. */
        snprintf(line, sizeof line, "ok: %s (seq %" PRIu64 ")", cli_oneof_name(&op->base), r->seq);
    } else {
        cli_result_line(res, r->seq, line, sizeof line);
    }
    int rc = cli_code_exit(res->code);
    if (c->g->output == CLI_OUTPUT_JSON) {
        json_object *o = cli_json_message(&res->base);
        json_object_object_add(o, "seq", json_object_new_uint64(r->seq));
        json_object_object_add(o, "index", json_object_new_int64(r->index));
        json_object_object_add(o, "op", json_object_new_string(cli_oneof_name(&op->base)));
        json_object_object_add(o, "certified", json_object_new_boolean(r->cert != NULL));
        cli_json_print(o);
        if (rc != CLI_EXIT_OK) {
            fprintf(stderr, "twinbft %s: %s\n", c->cmd->path, line);
        }
    } else {
        printf("%s\n", line);
        const ProtobufCMessage *payload = cli_result_payload(res);
        if (payload != NULL) {
            cli_print_message(stdout, payload, 2);
        }
    }
    twinbft__sm_result__free_unpacked(res, NULL);
    return rc;
}

static void cli_print_configs(const Twinbft__SmQueryResult *q) {
    for (size_t i = 0; i < q->n_configs; i++) {
        const Twinbft__SmConfigEntry *e = q->configs[i];
        printf("%s = ", e->key);
        ProtobufCBinaryData v = e->value;
        FILE *out = stdout;
        /* Value first on its line so `config get` output is easy to cut. */
        bool text = true;
        for (size_t k = 0; k < v.len && text; k++) {
            text = v.data[k] >= 0x20 && v.data[k] < 0x7f;
        }
        if (text) {
            fprintf(out, "%.*s", (int)v.len, (const char *)v.data);
        } else {
            fputs("0x", out);
            for (size_t k = 0; k < v.len; k++) {
                fprintf(out, "%02x", v.data[k]);
            }
        }
        printf("  (version %" PRIu64 ", modified at seq %" PRIu64 ")\n", e->version,
               e->modified_seq);
    }
}

int cli_print_query(const cli_ctx *c, const tb_owned *r) {
    char reason[CLI_NAME_BYTES];
    Twinbft__SmQueryResult *q = twinbft__sm_query_result__unpack(NULL, r->data_len, r->data);
    if (q == NULL) {
        return cli_fail(c, CLI_EXIT_FAILED, "the cluster's answer does not decode (%zu bytes)",
                        r->data_len);
    }
    /* A missing item is a failed lookup (1); any other denial is a refusal (4). */
    int rc = q->code == TWINBFT__SM_CODE__SM_CODE_DENIED &&
                     q->reason == TWINBFT__SM_REASON__SM_REASON_NOT_FOUND
                 ? CLI_EXIT_FAILED
                 : cli_code_exit(q->code);
    if (c->g->output == CLI_OUTPUT_JSON) {
        json_object *o = cli_json_message(&q->base);
        json_object_object_add(o, "executed", json_object_new_uint64(r->seq));
        json_object_object_add(o, "ordered", json_object_new_boolean(r->ordered));
        cli_json_print(o);
    }
    if (rc != CLI_EXIT_OK) {
        cli_enum_name(&twinbft__sm_reason__descriptor, q->reason, reason, sizeof reason);
        fprintf(c->g->output == CLI_OUTPUT_JSON ? stderr : stdout, "%s: %s%s%s%s\n",
                q->code == TWINBFT__SM_CODE__SM_CODE_DENIED ? "denied" : "failed", reason,
                q->detail[0] ? " (" : "", q->detail, q->detail[0] ? ")" : "");
    } else if (c->g->output == CLI_OUTPUT_TABLE && q->n_configs > 0) {
        cli_print_configs(q);
        if (q->more) {
            printf("(more: continue with --start-after %s)\n", q->configs[q->n_configs - 1]->key);
        }
    } else if (c->g->output == CLI_OUTPUT_TABLE) {
        cli_print_message(stdout, &q->base, 0);
    }
    twinbft__sm_query_result__free_unpacked(q, NULL);
    return rc;
}
