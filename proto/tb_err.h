/* Project-wide error codes. Functions that can fail return 0 on success or
 * one of these (negative) codes; tb_strerror() names them for people. */
#ifndef TB_ERR_H
#define TB_ERR_H

enum tb_err {
    TB_OK = 0,
    TB_ERR_INVALID = -1,   /* malformed input: bad encoding, field out of range */
    TB_ERR_TOO_LARGE = -2, /* a length exceeds its named maximum */
    TB_ERR_NOMEM = -3,     /* allocation failed */
    TB_ERR_CRYPTO = -4,    /* a cryptographic operation failed */
    TB_ERR_BAD_SIG = -5,   /* a signature did not verify */
    TB_ERR_QUORUM = -6,    /* not enough distinct valid signers */
    TB_ERR_MISMATCH = -7,  /* a digest, root or proof does not match */
    TB_ERR_EXPIRED = -8,   /* outside a validity window */
    TB_ERR_IO = -9,        /* a file or socket operation failed */
    TB_ERR_NOT_FOUND = -10,
    TB_ERR_AGAIN = -11,    /* incomplete input: wait for more bytes */
    TB_ERR_STATE = -12,    /* the operation is not valid in the current state */
    TB_ERR_TIMEOUT = -13,  /* no (sufficient) answer in time */
    TB_ERR_NOSPACE = -14,  /* the disk, or a store's map, is full */
    TB_ERR_READONLY = -15, /* a file or directory that must be written is read-only */
    /* f+1 replicas serve another cluster id or epoch than the client's
     * configuration names: nothing was sent for ordering */
    TB_ERR_WRONG_CLUSTER = -16,
    TB_ERR_BUDGET = -17, /* a memory budget is spent: the input that asked for more is refused */
};

/* A static, human-readable name for an error code; never NULL. */
const char *tb_strerror(int code);

#endif
