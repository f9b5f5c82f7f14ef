/* A memory budget for bytes that peers make us hold (client/link.h: the
 * unfinished frames of links), per identity and in total.
 *
 * Each identity that holds something has an account; every link of that
 * identity joins it, so an identity's share is the same however many links
 * it opens. A take that would carry the identity past its share, or all
 * identities together past the total, is refused: the caller drops what
 * asked for it (the link layer closes that link) instead of growing.
 *
 * Pure bookkeeping: no I/O, no clock, nothing allocated after
 * tb_budget_new. Threading: one thread (the event loop's). */
#ifndef TB_BUDGET_H
#define TB_BUDGET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct tb_budget tb_budget;
typedef struct tb_budget_account tb_budget_account;

/* A budget of total_bytes_max across at most accounts_max identities, of
 * which each may hold identity_bytes_max. TB_ERR_INVALID when a limit is 0
 * or identity_bytes_max exceeds total_bytes_max, TB_ERR_NOMEM. */
int tb_budget_new(size_t identity_bytes_max, size_t total_bytes_max, size_t accounts_max,
                  tb_budget **out);
/* Every account must have been left. NULL is allowed. */
void tb_budget_free(tb_budget *b);

/* The account of `name`, shared with every other holder of that name
 * (counted: each join needs one leave). TB_ERR_INVALID for a name of
 * PROTO_NAME_BYTES_MAX bytes or more, TB_ERR_TOO_LARGE when accounts_max
 * identities already hold accounts. */
int tb_budget_join(tb_budget *b, const char *name, tb_budget_account **out);
/* Gives up one hold on the account; the bytes it still holds must have been
 * put back first. */
void tb_budget_leave(tb_budget_account *a);

/* Charges bytes to the account: false (and nothing charged) when that would
 * exceed the identity's share or the total. */
bool tb_budget_take(tb_budget_account *a, size_t bytes);
/* Gives back bytes taken earlier from this account. */
void tb_budget_put(tb_budget_account *a, size_t bytes);

/* Bytes held by all identities together, and by one. */
size_t tb_budget_used(const tb_budget *b);
size_t tb_budget_account_used(const tb_budget_account *a);
/* The budget an account belongs to. */
const tb_budget *tb_budget_of(const tb_budget_account *a);
size_t tb_budget_identity_max(const tb_budget *b);
size_t tb_budget_total_max(const tb_budget *b);

#endif
