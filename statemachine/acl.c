/* Access control. Principals are certificate identities; their roles are
 * bits in the ACL table (admin, operator, owner, node agent), granted by an
 * admin. An owner acts on the twins it owns and on their subtrees; roles do
 * not imply one another. */
#include <string.h>

#include "statemachine/internal.h"

static uint32_t roles_read(sm_ctx *c, const char *principal, int *err) {
    Twinbft__SmAcl *acl = NULL;
    int e = sm_rec_get(c, SM_T_ACL, principal, strlen(principal), &twinbft__sm_acl__descriptor,
                       (void **)&acl);
    if (e == TB_ERR_NOT_FOUND) {
        return 0;
    }
    if (e != 0) {
        *err = e;
        return 0;
    }
    return acl->revoked ? 0 : acl->roles & SM_ROLES_ALL;
}

uint32_t sm_roles_of(sm_ctx *c, const char *principal, int *err) {
    if (!c->cached) {
        return roles_read(c, principal, err);
    }
    /* FNV-1a picks the slot: a cache, never a decision. */
    uint32_t h = 2166136261u;
    for (const char *p = principal; *p != '\0'; p++) {
        h = (h ^ (uint8_t)*p) * 16777619u;
    }
    sm_role_cache *slot = &c->s->roles[h % SM_ROLE_CACHE_SLOTS];
    if (slot->valid && strcmp(slot->principal, principal) == 0) {
        return slot->roles;
    }
    uint32_t roles = roles_read(c, principal, err);
    if (*err == 0) {
        TB_ASSERT(strlen(principal) <= SM_PRINCIPAL_BYTES_MAX);
        strcpy(slot->principal, principal);
        slot->roles = roles;
        slot->valid = true;
    }
    return roles;
}

bool sm_owns(sm_ctx *c, const Twinbft__SmTwin *twin, int *err) {
    (void)err;
    if ((c->roles & SM_ROLE_OWNER) == 0) {
        return false;
    }
    /* owners lists the owner of every ancestor and of the twin itself. */
    for (size_t i = 0; i < twin->n_owners; i++) {
        if (strcmp(twin->owners[i], c->principal) == 0) {
            return true;
        }
    }
    return false;
}

/* "admin or operator": the roles of a mask, by name, for denial details. */
static void role_names(uint32_t roles, char *out, size_t cap) {
    static const struct {
        uint32_t bit;
        const char *name;
    } names[] = {{SM_ROLE_ADMIN, "admin"},
                 {SM_ROLE_OPERATOR, "operator"},
                 {SM_ROLE_OWNER, "owner"},
                 {SM_ROLE_NODE_AGENT, "node-agent"}};
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if ((roles & names[i].bit) != 0 && used < cap) {
            int n = snprintf(out + used, cap - used, "%s%s", used ? " or " : "", names[i].name);
            used += n > 0 ? (size_t)n : 0;
        }
    }
}

bool sm_authz(sm_ctx *c, uint32_t roles) {
    if ((c->roles & roles) != 0) {
        return true;
    }
    char need[64];
    role_names(roles, need, sizeof need);
    sm_deny(c, TWINBFT__SM_REASON__SM_REASON_ROLE, "%s lacks the role (needs %s)", c->principal,
            need);
    return false;
}

bool sm_authz_twin(sm_ctx *c, uint32_t roles, bool owners, const Twinbft__SmTwin *twin, int *err) {
    if ((c->roles & roles) != 0) {
        return true;
    }
    if (owners && (c->roles & SM_ROLE_OWNER) != 0) {
        if (sm_owns(c, twin, err)) {
            return true;
        }
        if (*err == 0) {
            sm_deny(c, TWINBFT__SM_REASON__SM_REASON_NOT_OWNER,
                    "twin %s is outside the subtree of %s", twin->id, c->principal);
        }
        return false;
    }
    return sm_authz(c, roles | (owners ? SM_ROLE_OWNER : 0));
}

/* The principal's ACL record, or a fresh empty one (*found false). */
static int acl_get(sm_ctx *c, const char *principal, Twinbft__SmAcl **out, bool *found) {
    int err = sm_rec_get(c, SM_T_ACL, principal, strlen(principal), &twinbft__sm_acl__descriptor,
                         (void **)out);
    *found = err == 0;
    if (err == TB_ERR_NOT_FOUND) {
        Twinbft__SmAcl *acl = sm_arena_alloc(c->arena, sizeof *acl);
        twinbft__sm_acl__init(acl);
        acl->principal = (char *)principal;
        *out = acl;
        err = 0;
    }
    return err;
}

int sm_op_acl_grant(sm_ctx *c, const Twinbft__SmAclGrant *op) {
    if (!sm_valid_principal(op->principal) || (op->roles & ~(uint32_t)SM_ROLES_ALL) != 0) {
        return sm_malformed(c, "grant needs a valid principal and known role bits");
    }
    if (!sm_authz(c, SM_ROLE_ADMIN)) {
        return 0;
    }
    if (strcmp(op->principal, c->principal) == 0 && (op->roles & SM_ROLE_ADMIN) == 0) {
        return sm_deny(c, TWINBFT__SM_REASON__SM_REASON_SELF,
                       "an admin may not drop its own admin role");
    }
    Twinbft__SmAcl *acl = NULL;
    bool found = false;
    int err = acl_get(c, op->principal, &acl, &found);
    if (err != 0) {
        return err;
    }
    if (acl->revoked) {
        return sm_deny(c, TWINBFT__SM_REASON__SM_REASON_REVOKED,
                       "identity %s is revoked: a revoked name holds no roles", op->principal);
    }
    acl->roles = op->roles; /* revoked keys stay revoked */
    return sm_rec_put(c, SM_T_ACL, op->principal, strlen(op->principal), acl);
}

int sm_op_acl_revoke(sm_ctx *c, const Twinbft__SmAclRevoke *op) {
    if (!sm_valid_principal(op->principal)) {
        return sm_malformed(c, "revoke needs a valid principal");
    }
    if (!sm_authz(c, SM_ROLE_ADMIN)) {
        return 0;
    }
    if (strcmp(op->principal, c->principal) == 0) {
        return sm_deny(c, TWINBFT__SM_REASON__SM_REASON_SELF, "an admin may not revoke itself");
    }
    Twinbft__SmAcl *acl = NULL;
    bool found = false;
    int err = acl_get(c, op->principal, &acl, &found);
    if (err != 0) {
        return err;
    }
    if (!found || acl->roles == 0) {
        return sm_deny(c, TWINBFT__SM_REASON__SM_REASON_NOT_FOUND, "principal %s has no roles",
                       op->principal);
    }
    if (!acl->revoked && acl->n_revoked_keys == 0) {
        return sm_db_del(c->s, c->txn, SM_T_ACL, op->principal, strlen(op->principal));
    }
    acl->roles = 0; /* the record stays: it holds the revocations */
    return sm_rec_put(c, SM_T_ACL, op->principal, strlen(op->principal), acl);
}

/* Identity revocation (DESIGN.md: revoked identities are refused at the
 * handshake). Roles alone are not enough: a principal without roles can
 * still connect, read what anyone may read and subscribe to the commands
 * addressed to it. A revoked name, or a revoked key of a name, is refused
 * by every replica (sm_identity_revoked), and open links are closed once
 * the revocation executes. Revocations are for good: a name is revoked
 * for life, a key until the end of the cluster; re-issue a certificate
 * with a new key instead of un-revoking. */
int sm_op_identity_revoke(sm_ctx *c, const Twinbft__SmIdentityRevoke *op) {
    if (!sm_valid_principal(op->principal) ||
        (op->key.len != 0 && op->key.len != PROTO_PUBKEY_BYTES)) {
        return sm_malformed(c, "identity revoke needs a valid principal and, optionally, a "
                               "32-byte Ed25519 public key");
    }
    if (!sm_authz(c, SM_ROLE_ADMIN)) {
        return 0;
    }
    if (strcmp(op->principal, c->principal) == 0) {
        return sm_deny(c, TWINBFT__SM_REASON__SM_REASON_SELF,
                       "an admin may not revoke its own identity");
    }
    Twinbft__SmAcl *acl = NULL;
    bool found = false;
    int err = acl_get(c, op->principal, &acl, &found);
    if (err != 0) {
        return err;
    }
    if (acl->revoked) {
        return 0; /* already revoked, whole: nothing to add */
    }
    if (op->key.len == 0) {
        acl->revoked = true;
        acl->roles = 0;
        acl->n_revoked_keys = 0;
        acl->revoked_keys = NULL;
    } else {
        for (size_t i = 0; i < acl->n_revoked_keys; i++) {
            if (acl->revoked_keys[i].len == op->key.len &&
                memcmp(acl->revoked_keys[i].data, op->key.data, op->key.len) == 0) {
                return 0; /* already revoked */
            }
        }
        if (acl->n_revoked_keys >= SM_REVOKED_KEYS_MAX) {
            return sm_deny(c, TWINBFT__SM_REASON__SM_REASON_LIMIT,
                           "%s already has %d revoked keys: revoke the name instead", op->principal,
                           SM_REVOKED_KEYS_MAX);
        }
        ProtobufCBinaryData *keys =
            sm_arena_alloc(c->arena, (acl->n_revoked_keys + 1) * sizeof *keys);
        if (acl->n_revoked_keys > 0) {
            memcpy(keys, acl->revoked_keys, acl->n_revoked_keys * sizeof *keys);
        }
        keys[acl->n_revoked_keys] = op->key;
        acl->revoked_keys = keys;
        acl->n_revoked_keys++;
    }
    c->s->stats.revocations++;
    return sm_rec_put(c, SM_T_ACL, op->principal, strlen(op->principal), acl);
}

int sm_identity_revoked(sm_store *s, const char *principal, const uint8_t key[PROTO_PUBKEY_BYTES],
                        bool *revoked) {
    *revoked = false;
    if (!sm_valid_principal(principal)) {
        return 0; /* no record can name it */
    }
    MDB_txn *txn = NULL;
    int rc = mdb_txn_begin(sm_store_env(s), NULL, MDB_RDONLY, &txn);
    if (rc != 0) {
        return sm_lmdb_err(rc, "revocation read txn");
    }
    MDB_val v;
    int err = sm_db_get(s, txn, SM_T_ACL, principal, strlen(principal), &v);
    if (err == 0) {
        Twinbft__SmAcl *acl = twinbft__sm_acl__unpack(NULL, v.mv_size, v.mv_data);
        if (acl == NULL) {
            err = TB_ERR_IO;
        } else {
            *revoked = acl->revoked;
            for (size_t i = 0; key != NULL && i < acl->n_revoked_keys; i++) {
                *revoked |= acl->revoked_keys[i].len == PROTO_PUBKEY_BYTES &&
                            memcmp(acl->revoked_keys[i].data, key, PROTO_PUBKEY_BYTES) == 0;
            }
            twinbft__sm_acl__free_unpacked(acl, NULL);
        }
    } else if (err == TB_ERR_NOT_FOUND) {
        err = 0;
    }
    mdb_txn_abort(txn);
    return err;
}
