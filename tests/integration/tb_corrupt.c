/* Test helper: plants in a stopped replica's store what non-deterministic
 * execution or a corrupted disk would leave: one config key that the other
 * replicas do not have, written through the state machine's own write path
 * (so that its state digest follows, as it would after a non-deterministic
 * operation) at the seq it last executed. Its consensus records are left
 * alone: it restarts believing it holds the state everyone agreed on.
 *
 *   tb_corrupt DATA_DIR KEY VALUE */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/tb_err.h"
#include "replica/daemon.h"
#include "replica/storage.h"
#include "statemachine/sm.h"

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: tb_corrupt DATA_DIR KEY VALUE\n");
        return 2;
    }
    rep_storage *st = NULL;
    int rc = rep_storage_open(argv[1], REP_ADMIN_PRINCIPAL, 0, 0, &st);
    if (rc != 0) {
        fprintf(stderr, "tb_corrupt: cannot open %s: %s\n", argv[1], tb_strerror(rc));
        return 1;
    }
    sm_store *s = rep_storage_sm(st);
    Twinbft__SmConfigPut put = TWINBFT__SM_CONFIG_PUT__INIT;
    put.key = argv[2];
    put.value = (ProtobufCBinaryData){strlen(argv[3]), (uint8_t *)argv[3]};
    Twinbft__SmOp op = TWINBFT__SM_OP__INIT;
    op.op_case = TWINBFT__SM_OP__OP_CONFIG_PUT;
    op.config_put = &put;
    size_t len = twinbft__sm_op__get_packed_size(&op);
    uint8_t *buf = malloc(len ? len : 1);
    if (buf == NULL) {
        rep_storage_close(st);
        return 1;
    }
    twinbft__sm_op__pack(&op, buf);
    uint64_t seq = sm_store_applied(s);
    MDB_txn *txn = NULL;
    sm_output out;
    rc = sm_txn_begin(s, &txn);
    /* At the seq it last executed, after any request of that batch. */
    rc = rc ? rc : sm_apply(s, txn, seq, 1000000, 0, REP_ADMIN_PRINCIPAL, buf, len, &out);
    rc = rc ? rc : sm_txn_commit(s, txn);
    free(buf);
    rep_storage_close(st);
    if (rc != 0) {
        fprintf(stderr, "tb_corrupt: %s\n", tb_strerror(rc));
        return 1;
    }
    printf("tb_corrupt: %s: config %s planted at seq %llu (result code %d)\n", argv[1], argv[2],
           (unsigned long long)seq, out.code);
    return 0;
}
