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
    return acl->roles & SM_ROLES_ALL;
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
    Twinbft__SmAcl acl = TWINBFT__SM_ACL__INIT;
    acl.principal = op->principal;
    acl.roles = op->roles;
    return sm_rec_put(c, SM_T_ACL, op->principal, strlen(op->principal), &acl);
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
    int err = sm_db_del(c->s, c->txn, SM_T_ACL, op->principal, strlen(op->principal));
    if (err == TB_ERR_NOT_FOUND) {
        return sm_deny(c, TWINBFT__SM_REASON__SM_REASON_NOT_FOUND, "principal %s has no roles",
                       op->principal);
    }
    return err;
}
