/* Versioned configuration with compare-and-set. A key's version is 1 when
 * it is created and grows by one per put; a delete forgets the key, so a
 * re-created key starts again at 1. */
#include <string.h>

#include "statemachine/internal.h"

static bool key_valid(const char *k) {
    size_t n = 0;
    for (; k[n] != '\0'; n++) {
        if (n >= SM_CONFIG_KEY_BYTES_MAX || (unsigned char)k[n] < 0x21 ||
            (unsigned char)k[n] > 0x7e) {
            return false;
        }
    }
    return n > 0;
}

static int config_get(sm_ctx *c, const char *key, Twinbft__SmConfigEntry **out) {
    return sm_rec_get(c, SM_T_CONFIG, key, strlen(key), &twinbft__sm_config_entry__descriptor,
                      (void **)out);
}

/* The result payload: the entry's key and version (not its value, which
 * the client already has or can read). */
static void payload(sm_ctx *c, const char *key, uint64_t version, uint64_t seq) {
    Twinbft__SmConfigEntry *e = sm_arena_alloc(c->arena, sizeof *e);
    twinbft__sm_config_entry__init(e);
    e->key = (char *)key;
    e->version = version;
    e->modified_seq = seq;
    c->res->payload_case = TWINBFT__SM_RESULT__PAYLOAD_CONFIG;
    c->res->config = e;
}

/* Compare-and-set: expected 0 means "absent". Sets the conflict result. */
static bool cas_holds(sm_ctx *c, const char *key, const Twinbft__SmConfigEntry *cur,
                      uint64_t expected) {
    uint64_t version = cur ? cur->version : 0;
    if (version == expected) {
        return true;
    }
    sm_result(c, SM_CONFLICT, TWINBFT__SM_REASON__SM_REASON_VERSION,
              "%s is at version %llu, not %llu", key, (unsigned long long)version,
              (unsigned long long)expected);
    payload(c, key, version, cur ? cur->modified_seq : 0);
    return false;
}

int sm_op_config_put(sm_ctx *c, const Twinbft__SmConfigPut *op) {
    if (!key_valid(op->key) || op->value.len > SM_CONFIG_VALUE_BYTES_MAX) {
        return sm_malformed(c,
                            "config needs a printable key of at most %d bytes and a value of "
                            "at most %d",
                            SM_CONFIG_KEY_BYTES_MAX, SM_CONFIG_VALUE_BYTES_MAX);
    }
    if (!sm_authz(c, SM_ROLES_MANAGE)) {
        return 0;
    }
    Twinbft__SmConfigEntry *cur = NULL;
    int err = config_get(c, op->key, &cur);
    if (err != 0 && err != TB_ERR_NOT_FOUND) {
        return err;
    }
    if (op->cas && !cas_holds(c, op->key, cur, op->expected_version)) {
        return 0;
    }
    Twinbft__SmConfigEntry e = TWINBFT__SM_CONFIG_ENTRY__INIT;
    e.key = op->key;
    e.value = op->value;
    e.version = cur ? cur->version + 1 : 1;
    e.modified_seq = c->seq;
    payload(c, op->key, e.version, c->seq);
    return sm_rec_put(c, SM_T_CONFIG, op->key, strlen(op->key), &e);
}

int sm_op_config_delete(sm_ctx *c, const Twinbft__SmConfigDelete *op) {
    if (!key_valid(op->key)) {
        return sm_malformed(c, "config key is not valid");
    }
    if (!sm_authz(c, SM_ROLES_MANAGE)) {
        return 0;
    }
    Twinbft__SmConfigEntry *cur = NULL;
    int err = config_get(c, op->key, &cur);
    if (err != 0 && err != TB_ERR_NOT_FOUND) {
        return err;
    }
    if (op->cas && !cas_holds(c, op->key, cur, op->expected_version)) {
        return 0;
    }
    if (cur == NULL) {
        return sm_deny(c, TWINBFT__SM_REASON__SM_REASON_NOT_FOUND, "no config key %s", op->key);
    }
    payload(c, op->key, cur->version, cur->modified_seq);
    return sm_db_del(c->s, c->txn, SM_T_CONFIG, op->key, strlen(op->key));
}
