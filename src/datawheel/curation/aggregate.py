"""Label aggregation Dawid–Skene style (Dawid & Skene, 1979), with anchors and a model prior.

Each user gets a confusion matrix estimated by EM from agreement with the other
users, with the known labels of seed, golden and annotated items (anchors, fixed
throughout), and with the champion's prediction as a soft per-item prior.
crowd-kit's DawidSkene is the maintained reference implementation, but it takes
neither fixed anchors nor a per-item prior — and both are what let a coordinated
minority with a consistent wrong mapping be told apart from the truth — and it
requires transformers, hundreds of MB for one EM loop; so the loop is here.
"""

from __future__ import annotations

import numpy as np

#: users whose expected accuracy falls below this are excluded from aggregation
MIN_USER_RELIABILITY = 0.5
RELIABILITY_PRIOR = 0.8
RELIABILITY_PSEUDO_VOTES = 4.0

#: one (user index, label index) pair per vote, one list per item
ItemVotes = list[list[tuple[int, int]]]


def dawid_skene(item_votes: ItemVotes, n_users: int, k: int, prior: np.ndarray, anchored: dict[int, int],
                iterations: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (item posteriors [n_items, k], user confusion matrices [n_users, k, k]).

    A diagonal-heavy Dirichlet prior on each confusion row keeps users with few
    votes near "mostly right" until the data says otherwise.
    """
    if not item_votes:
        return np.zeros((0, k)), np.zeros((n_users, k, k))
    flat = [(i, u, lab) for i, votes in enumerate(item_votes) for u, lab in votes]
    ii, uu, ll = (np.array(col, dtype=np.int64) for col in zip(*flat)) if flat else (np.zeros(0, np.int64),) * 3
    anchor_i = np.array(list(anchored), dtype=np.int64)
    anchor_post = np.eye(k)[np.array(list(anchored.values()), dtype=np.int64)] if anchored else None
    log_prior = np.log(np.clip(prior, 1e-6, 1.0))
    # Start from the model prior plus the raw vote counts.
    post = np.array(prior, dtype=np.float64)
    np.add.at(post, (ii, ll), 1.0)
    if anchored:
        post[anchor_i] = anchor_post
    post /= post.sum(axis=1, keepdims=True)
    conf = np.zeros((n_users, k, k))
    for _ in range(iterations):
        # M-step: per-user confusion counts (true class x given label) plus pseudo-counts.
        conf[:] = 0.2 / k
        conf[:, np.arange(k), np.arange(k)] += 2.0
        conf_t = conf.transpose(0, 2, 1)  # a view: [user, given label, true class]
        np.add.at(conf_t, (uu, ll), post[ii])
        conf /= conf.sum(axis=2, keepdims=True)
        class_prior = np.clip(post.mean(axis=0), 1e-3, None)
        # E-step: log posterior = prior terms + each vote's log-likelihood under its user's confusion.
        logp = log_prior + np.log(class_prior / class_prior.sum())
        np.add.at(logp, ii, np.log(conf)[uu, :, ll])
        logp -= logp.max(axis=1, keepdims=True)
        new = np.exp(logp)
        new /= new.sum(axis=1, keepdims=True)
        if anchored:
            new[anchor_i] = anchor_post
        converged = np.abs(new - post).max() < 1e-6
        post = new
        if converged:
            break
    return post, conf


def reliability(item_votes: ItemVotes, post: np.ndarray, n_users: int) -> tuple[np.ndarray, np.ndarray]:
    """Each user's expected accuracy (the posterior mass of the labels they gave) and vote count.

    Shrunk towards "mostly right" by a few pseudo-votes, so one unlucky
    disagreement does not exclude a newcomer; a consistent liar still sinks.
    """
    hit = np.full(n_users, RELIABILITY_PRIOR * RELIABILITY_PSEUDO_VOTES)
    count = np.zeros(n_users)
    for i, votes in enumerate(item_votes):
        for u, lab in votes:
            hit[u] += post[i, lab]
            count[u] += 1
    return hit / (count + RELIABILITY_PSEUDO_VOTES), count


def aggregate(item_votes: ItemVotes, n_users: int, k: int, prior: np.ndarray, anchored: dict[int, int],
              iterations: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, ItemVotes]:
    """Aggregate, exclude unreliable users, aggregate again without them.

    Returns (posteriors, per-user reliability, per-user vote counts, the votes that were kept).
    """
    post, _ = dawid_skene(item_votes, n_users, k, prior, anchored, iterations)
    rel, counts = reliability(item_votes, post, n_users)
    trusted = rel >= MIN_USER_RELIABILITY
    if trusted.all():
        return post, rel, counts, item_votes
    kept = [[(u, lab) for u, lab in votes if trusted[u]] for votes in item_votes]
    post, _ = dawid_skene(kept, n_users, k, prior, anchored, iterations)
    return post, rel, counts, kept

