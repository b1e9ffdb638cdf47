//! Group commit above Raft: concurrent writes become one log entry.
//!
//! openraft 0.9 appends each proposal separately and waits for that append's
//! fsync before it takes the next, so one entry per client write would cost
//! one fsync each. The batcher does what etcd's raft loop does instead:
//!
//! 1. Writes queue on a channel. The batcher takes the first and everything
//!    queued behind it, up to [`MAX_BATCH`] requests or [`MAX_BATCH_BYTES`].
//! 2. It proposes them as one [`Request::Batch`] entry (a lone request as
//!    itself), then waits until that entry is on disk (the log's fsync
//!    count moves) or the proposal has finished, before it forms the next
//!    batch: openraft appends one proposal at a time, so a batch proposed
//!    earlier would only wait in its queue, and be smaller. Commit, apply
//!    and the answers of one batch overlap the next batch's fsync. At most
//!    [`IN_FLIGHT`] proposals are outstanding.
//! 3. The state machine applies the batch's requests in order, each with its
//!    own etcd index and response, and each waiter gets its own.

use std::sync::Arc;

use openraft::error::{ClientWriteError, RaftError};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::net::Written;
use crate::types::{NodeId, Raft, Request, Response};

/// Most requests in one entry.
pub const MAX_BATCH: usize = 512;
/// Most string bytes (keys, values, prevValues) in one entry; the request
/// that crosses it is the last one in.
pub const MAX_BATCH_BYTES: usize = 4 << 20;
/// Most proposals outstanding at once.
pub const IN_FLIGHT: usize = 8;

/// Why a proposal failed: `Ok(leader)` when this member is not the leader
/// (with the leader if known), `Err(why)` for anything else.
pub type ProposeError = Result<Option<NodeId>, String>;

type Waiter = oneshot::Sender<Result<Written, ProposeError>>;

/// The handle writes are queued on.
#[derive(Clone)]
pub struct Batcher {
    tx: mpsc::UnboundedSender<(Request, Waiter)>,
}

/// A request's string bytes (what its entry grows by, less a few bytes
/// of numbers and tags): key, value and prevValue alike, so an entry stays
/// within [`MAX_BATCH_BYTES`] plus one request.
fn size(r: &Request) -> usize {
    match r {
        Request::Set { key, opts, .. } => {
            key.len() + opts.value.len() + opts.prev_value.as_ref().map_or(0, String::len)
        }
        Request::CreateInOrder { dir, value, .. } => dir.len() + value.len(),
        Request::Delete {
            key, prev_value, ..
        } => key.len() + prev_value.as_ref().map_or(0, String::len),
        Request::Once { req, .. } => size(req),
        _ => 64,
    }
}

impl Batcher {
    /// Starts the batcher task for `raft`.
    pub fn start(raft: Raft, mut flushes: tokio::sync::watch::Receiver<u64>) -> Batcher {
        let (tx, mut rx) = mpsc::unbounded_channel::<(Request, Waiter)>();
        tokio::spawn(async move {
            let slots = Arc::new(Semaphore::new(IN_FLIGHT));
            while let Some(first) = rx.recv().await {
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    return;
                };
                let mut bytes = size(&first.0);
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
                    match rx.try_recv() {
                        Ok(m) => {
                            bytes += size(&m.0);
                            batch.push(m);
                        }
                        Err(_) => break,
                    }
                }
                let raft = raft.clone();
                let seen = *flushes.borrow_and_update();
                let (done_tx, done_rx) = oneshot::channel::<()>();
                tokio::spawn(async move {
                    propose(&raft, batch).await;
                    drop(permit);
                    let _ = done_tx.send(());
                });
                tokio::select! {
                    _ = flushes.wait_for(|c| *c > seen) => {}
                    _ = done_rx => {}
                }
            }
        });
        Batcher { tx }
    }

    /// Proposes `req` and waits for its own result.
    pub async fn propose(&self, req: Request) -> Result<Written, ProposeError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send((req, tx))
            .map_err(|_| Err("proposer stopped".to_string()))?;
        rx.await
            .unwrap_or_else(|_| Err(Err("proposer stopped".to_string())))
    }
}

/// Step 2 and 3 for one batch.
async fn propose(raft: &Raft, mut batch: Vec<(Request, Waiter)>) {
    let (req, waiters): (Request, Vec<Waiter>) = if batch.len() == 1 {
        let (r, w) = batch.remove(0);
        (r, vec![w])
    } else {
        let (reqs, ws) = batch.into_iter().unzip();
        (Request::Batch(reqs), ws)
    };
    match raft.client_write(req).await {
        Ok(r) => {
            let (raft_index, raft_term) = (r.log_id.index, r.log_id.leader_id.term);
            let responses = match r.data {
                Response::Batch(rs) if waiters.len() > 1 => rs,
                one => vec![one],
            };
            for (w, response) in waiters.into_iter().zip(responses) {
                let _ = w.send(Ok(Written {
                    raft_index,
                    raft_term,
                    response,
                }));
            }
        }
        Err(e) => {
            let err: ProposeError = match e {
                RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => Ok(f.leader_id),
                e => Err(e.to_string()),
            };
            for w in waiters {
                let _ = w.send(Err(err.clone()));
            }
        }
    }
}
