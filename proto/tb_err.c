#include "proto/tb_err.h"

const char *tb_strerror(int code) {
    switch (code) {
    case TB_OK:
        return "ok";
    case TB_ERR_INVALID:
        return "invalid input";
    case TB_ERR_TOO_LARGE:
        return "input exceeds its maximum size";
    case TB_ERR_NOMEM:
        return "out of memory";
    case TB_ERR_CRYPTO:
        return "cryptographic operation failed";
    case TB_ERR_BAD_SIG:
        return "signature does not verify";
    case TB_ERR_QUORUM:
        return "not enough distinct valid signatures";
    case TB_ERR_MISMATCH:
        return "digest, root or proof does not match";
    case TB_ERR_EXPIRED:
        return "outside the validity window";
    case TB_ERR_IO:
        return "I/O error";
    case TB_ERR_NOT_FOUND:
        return "not found";
    case TB_ERR_AGAIN:
        return "incomplete input";
    case TB_ERR_STATE:
        return "not valid in the current state";
    case TB_ERR_TIMEOUT:
        return "timed out";
    case TB_ERR_NOSPACE:
        return "no space left (the disk or the store's map is full)";
    case TB_ERR_READONLY:
        return "read-only (file system or permissions)";
    case TB_ERR_WRONG_CLUSTER:
        return "the replicas serve another cluster id or epoch than the configuration names";
    case TB_ERR_BUDGET:
        return "over its memory budget";
    default:
        return "unknown error";
    }
}
