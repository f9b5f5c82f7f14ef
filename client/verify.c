/* Certificate checks with the trust anchors alone (proto/cert.h): no links,
 * no event loop, so a device can run it. */
#include <stdlib.h>
#include <string.h>

#include "client/internal.h"

void tb_cert_info_clear(tb_cert_info *info) {
    if (info == NULL) {
        return;
    }
    free(info->client);
    free(info->result);
    memset(info, 0, sizeof *info);
}

static int tb_trust_of(const tb_client_config *cluster, proto_trust *t) {
    memset(t, 0, sizeof *t);
    if (cluster->n == 0 || cluster->n > TB_MEMBERS_MAX || 3 * cluster->f + 1 > cluster->n ||
        cluster->cluster_id_len > TB_CLUSTER_ID_BYTES_MAX) {
        return TB_ERR_INVALID;
    }
    memcpy(t->cluster_id, cluster->cluster_id, cluster->cluster_id_len);
    t->cluster_id_len = cluster->cluster_id_len;
    t->epoch = cluster->epoch;
    t->n = cluster->n;
    t->f = cluster->f;
    for (uint32_t j = 0; j < cluster->n; j++) {
        /* A key that does not parse makes that member's signatures count for nothing. */
        if (proto_pubkey_from_raw(cluster->members[j].pubkey, &t->keys[j]) != 0) {
            t->keys[j] = NULL;
        }
    }
    return 0;
}

/* Copies what the certificate says. */
static int tb_info_fill(const proto_cert_info *pi, tb_cert_info *info) {
    info->seq = pi->seq;
    info->index = pi->index;
    info->count = pi->count;
    info->timestamp_ms = pi->timestamp_ms;
    info->not_before_ms = pi->not_before_ms;
    info->expires_at_ms = pi->expires_at_ms;
    info->number = pi->number;
    const char *client = pi->client != NULL ? pi->client : "";
    info->client = malloc(strlen(client) + 1);
    info->result = malloc(pi->result_len > 0 ? pi->result_len : 1);
    if (info->client == NULL || info->result == NULL) {
        tb_cert_info_clear(info);
        return TB_ERR_NOMEM;
    }
    memcpy(info->client, client, strlen(client) + 1);
    if (pi->result_len > 0) {
        memcpy(info->result, pi->result, pi->result_len);
    }
    info->result_len = pi->result_len;
    return 0;
}

int tb_cert_verify(const tb_client_config *cluster, const uint8_t *cert, size_t len,
                   uint64_t now_ms, tb_cert_info *info) {
    proto_trust t;
    proto_cert_info pi;
    memset(&pi, 0, sizeof pi);
    if (info != NULL) {
        memset(info, 0, sizeof *info);
    }
    if (cluster == NULL || (cert == NULL && len > 0)) {
        return TB_ERR_INVALID;
    }
    int rc = tb_trust_of(cluster, &t);
    if (rc == 0) {
        rc = proto_cert_verify(&t, cert, len, now_ms, info != NULL ? &pi : NULL);
    }
    if (rc == 0 && info != NULL) {
        rc = tb_info_fill(&pi, info);
    }
    proto_cert_info_clear(&pi);
    for (uint32_t j = 0; j < TB_MEMBERS_MAX; j++) {
        proto_pubkey_free(t.keys[j]);
    }
    return rc;
}
