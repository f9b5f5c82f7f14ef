/* Retransmission after a link comes back (PBFT 4 assumes messages are
 * eventually delivered; the links drop what is sent while they are down).
 *
 * When the host's link to a peer opens, the node sends that peer again what
 * the peer may have missed from it and still needs: the pre-prepares (as
 * primary) and its own prepares and commits for every slot of the current
 * view it still holds, executed or not, the checkpoint votes it cast since
 * it started down to the stable one (a restart forgets its earlier ones),
 * and, during a view change, its VIEW-CHANGE (or as the new primary, its
 * NEW-VIEW).
 *
 * Executed slots too: a write that executed while our link to the peer was
 * still opening (the first writes after `up`, a replica that restarted) is
 * executed here but not there, and on an idle cluster nothing else would
 * ever tell the peer; it stayed behind until the next write or checkpoint.
 * Slots below the stable checkpoint are gone; our vote for that checkpoint
 * makes a peer behind it fetch the state. All of it is signed messages we
 * already sent once, so a duplicate changes nothing at the receiver, and
 * a peer that has them drops them before checking a signature. */
#include "consensus/internal.h"

/* Seqs from..to (inclusive) of the window. */
static void resend_range(pbft_node *node, uint32_t peer, uint64_t from, uint64_t to) {
    uint32_t self = node->cfg.self;
    bool primary = primary_of(node, node->view) == self;
    for (uint64_t s = from; s <= to; s++) {
        const pbft_slot *sl = &node->slots[s % node->cfg.log_window];
        if (sl->seq != s || !sl->has_pp || sl->pp_view != node->view) {
            continue;
        }
        if (primary) {
            send_pre_prepare(node, peer, sl);
        }
        const pbft_vote *p = &sl->prepares[self], *c = &sl->commits[self];
        if (p->has && p->view == node->view) {
            out_signed(node, peer, TWINBFT__MESSAGE__KIND_PREPARE, p->sbytes, p->slen);
        }
        if (c->has && c->view == node->view) {
            out_signed(node, peer, TWINBFT__MESSAGE__KIND_COMMIT, c->sbytes, c->slen);
        }
    }
}

/* What the peer still needs first (the slots we have not executed: the
 * link's output is bounded, and what does not fit is lost), then the
 * executed ones, but only above the last checkpoint the peer signed: it
 * executed everything up to there. */
static void resend_slots(pbft_node *node, uint32_t peer) {
    uint64_t top = node->h + node->cfg.log_window;
    resend_range(node, peer, node->executed + 1, top);
    uint64_t from = node->peer_ckpt[peer] > node->h ? node->peer_ckpt[peer] + 1 : node->h + 1;
    resend_range(node, peer, from, node->executed < top ? node->executed : top);
}

static void resend_checkpoints(pbft_node *node, uint32_t peer) {
    for (size_t i = 0; i < node->n_ckpts; i++) {
        const pbft_ckpt *c = &node->ckpts[i];
        const pbft_vote *v = &c->votes[node->cfg.self];
        if (c->used && c->seq >= node->h && c->seq > 0 && v->has) {
            out_signed(node, peer, TWINBFT__MESSAGE__KIND_CHECKPOINT, v->sbytes, v->slen);
        }
    }
}

void pbft_node_peer_connected(pbft_node *node, uint32_t peer) {
    if (node->stopped || peer >= node->n || peer == node->cfg.self ||
        !answer_allowed(node, &node->resent_at[peer])) {
        return; /* a link that flaps on purpose gets one resend per interval */
    }
    if (node->in_vc) {
        const pbft_vote *own = &node->vcs[node->cfg.self];
        if (own->has && own->view == node->view) {
            out_signed(node, peer, TWINBFT__MESSAGE__KIND_VIEW_CHANGE, own->sbytes, own->slen);
        }
    } else {
        if (node->nv != NULL && primary_of(node, node->view) == node->cfg.self) {
            out_signed(node, peer, TWINBFT__MESSAGE__KIND_NEW_VIEW, node->nv, node->nv_len);
        }
        resend_slots(node, peer);
    }
    resend_checkpoints(node, peer);
}
