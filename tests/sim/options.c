/* Names on the command line: fault lists and planted bugs. */
#include <stdio.h>
#include <string.h>

#include "consensus/pbft.h"
#include "tests/sim/sim.h"

static const struct {
    const char *name;
    uint32_t flag;
} fault_names[] = {
    {"drop", SIM_FAULT_DROP},       {"delay", SIM_FAULT_DELAY},         {"dup", SIM_FAULT_DUP},
    {"reorder", SIM_FAULT_REORDER}, {"partition", SIM_FAULT_PARTITION}, {"crash", SIM_FAULT_CRASH},
    {"skew", SIM_FAULT_SKEW},
};

static const struct {
    const char *name;
    uint32_t flag;
} bug_names[] = {
    {"quorum-2f", PBFT_BUG_QUORUM_2F},     {"vc-drop-prepared", PBFT_BUG_VC_DROP_PREPARED},
    {"no-dedup", PBFT_BUG_NO_DEDUP},       {"skip-ckpt-verify", PBFT_BUG_SKIP_CKPT_VERIFY},
    {"stale-view", PBFT_BUG_STALE_VIEW},   {"no-abstain", PBFT_BUG_NO_ABSTAIN},
    {"timer-reset", PBFT_BUG_TIMER_RESET}, {"climb-alone", PBFT_BUG_CLIMB_ALONE},
    {"relay-trust", PBFT_BUG_RELAY_TRUST}, {"skip-chunk-verify", PBFT_BUG_SKIP_CHUNK_VERIFY},
};

int sim_faults_parse(const char *list, uint32_t *mask) {
    *mask = 0;
    if (strcmp(list, "all") == 0) {
        *mask = SIM_FAULT_ALL;
        return 0;
    }
    if (strcmp(list, "none") == 0) {
        return 0;
    }
    const char *p = list;
    while (*p != '\0') {
        size_t len = strcspn(p, ",");
        bool known = false;
        for (size_t i = 0; i < sizeof fault_names / sizeof fault_names[0]; i++) {
            if (strlen(fault_names[i].name) == len && strncmp(p, fault_names[i].name, len) == 0) {
                *mask |= fault_names[i].flag;
                known = true;
            }
        }
        if (!known) {
            return -1;
        }
        p += len;
        if (*p == ',') {
            p++;
        }
    }
    return 0;
}

void sim_faults_format(uint32_t mask, char *out, size_t cap) {
    if (mask == SIM_FAULT_ALL || mask == 0) {
        snprintf(out, cap, "%s", mask ? "all" : "none");
        return;
    }
    size_t at = 0;
    out[0] = '\0';
    for (size_t i = 0; i < sizeof fault_names / sizeof fault_names[0] && at < cap; i++) {
        if (mask & fault_names[i].flag) {
            int k = snprintf(out + at, cap - at, "%s%s", at ? "," : "", fault_names[i].name);
            at += k > 0 ? (size_t)k : 0;
        }
    }
}

uint32_t sim_bug_parse(const char *name) {
    for (size_t i = 0; i < sizeof bug_names / sizeof bug_names[0]; i++) {
        if (strcmp(name, bug_names[i].name) == 0) {
            return bug_names[i].flag;
        }
    }
    return 0;
}
