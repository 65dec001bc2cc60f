//! A target's lane on one worker: its queue of HTTP/1.1 copies, how they are batched, and which
//! connection each batch goes out on (HTTP/2 copies skip the queue: [`super::target`]).
//!
//! The relay goes first. When copies arrive, the lane yields once before it takes them: the
//! connections the worker has to serve right now (readiness already collected) run before any
//! copy is written, and copies made meanwhile join the same batch. Complete copies that are ready
//! together go out together, pipelined on one connection, up to [`MAX_BATCH`] copies or
//! [`MAX_BATCH_BYTES`]; a copy whose body still streams has a connection to itself. A batch takes
//! the newest idle connection of the lane, or a free slot of the target to dial one; when there is
//! neither, copies keep waiting in the queue (and count against `queue_size`) until a connection
//! comes back: so a busy shadow sees bigger batches rather than more connections.

use std::{collections::VecDeque, sync::Arc};

use tokio::{
    sync::{mpsc, Notify},
    time::Instant,
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use super::{
    pool::EVICTABLE_AFTER,
    request::ShadowRequest,
    sender::{Queued, Sender, Way},
};

/// Copies written together on one connection, at most.
pub(super) const MAX_BATCH: usize = 16;
/// Bytes of copies written together on one connection, at most (a single larger copy still
/// goes, alone).
pub(super) const MAX_BATCH_BYTES: usize = 256 * 1024;

/// Takes copies off a lane's queue and sends them in batches until `closing` is cancelled.
pub(super) async fn run(
    sender: Arc<Sender>,
    mut queue: mpsc::UnboundedReceiver<ShadowRequest>,
    closing: CancellationToken,
    aborting: CancellationToken,
    tasks: TaskTracker,
) {
    let (again_tx, mut again) = mpsc::unbounded_channel::<Vec<Queued>>();
    // Notified when a batch of this lane ends: its connection may be back in the pool.
    let returned = Arc::new(Notify::new());
    let mut pending: VecDeque<Queued> = VecDeque::new();
    'lane: loop {
        if pending.is_empty() {
            tokio::select! {
                biased;
                () = closing.cancelled() => break,
                copies = again.recv() => match copies {
                    Some(copies) => requeue(&mut pending, copies, &sender),
                    None => break,
                },
                copy = queue.recv() => match copy {
                    Some(copy) => take(copy, &mut pending),
                    None => break,
                },
            }
            // The relay goes first, and copies made meanwhile join this batch.
            tokio::task::yield_now().await;
        }
        while let Ok(copies) = again.try_recv() {
            requeue(&mut pending, copies, &sender);
        }
        while let Ok(copy) = queue.try_recv() {
            take(copy, &mut pending);
        }
        while !pending.is_empty() {
            let way = match ready_way(&sender).await {
                Some(way) => way,
                None => {
                    // No connection to be had now: wait for one of ours to come back, or for a
                    // slot another lane frees; copies keep arriving in the queue meanwhile.
                    tokio::select! {
                        biased;
                        () = closing.cancelled() => break 'lane,
                        () = returned.notified() => continue,
                        slot = sender.pool().freed_slot() => Way::Dial(slot),
                        // Another lane's idle connections become ours to close.
                        () = tokio::time::sleep(EVICTABLE_AFTER) => continue,
                    }
                }
            };
            let batch = take_batch(&mut pending);
            for _ in &batch {
                sender.queue_depth().dec();
            }
            let dequeued = Instant::now();
            let sender = sender.clone();
            let aborting = aborting.clone();
            let again_tx = again_tx.clone();
            let returned = returned.clone();
            tasks.spawn(async move {
                tokio::select! {
                    biased;
                    () = aborting.cancelled() => {
                        tracing::debug!(target_name = %sender.name(), "shadow copies cut off by shutdown");
                    }
                    again = deliver(&sender, batch, way, dequeued) => {
                        if !again.is_empty() {
                            let _ = again_tx.send(again);
                        }
                    }
                }
                returned.notify_one();
            });
        }
    }
    queue.close();
    let mut dropped = pending.len();
    for _ in &pending {
        sender.queue_depth().dec();
    }
    while queue.try_recv().is_ok() {
        sender.queue_depth().dec();
        dropped += 1;
    }
    if dropped > 0 {
        tracing::debug!(target_name = %sender.name(), dropped, "waiting shadow copies dropped at shutdown");
    }
}

fn take(copy: ShadowRequest, pending: &mut VecDeque<Queued>) {
    pending.push_back(Queued {
        copy,
        retried: false,
    });
}

async fn deliver(
    sender: &Sender,
    mut batch: Vec<Queued>,
    way: Way,
    dequeued: Instant,
) -> Vec<Queued> {
    if batch.len() == 1 && !batch[0].copy.is_complete() {
        if let Some(queued) = batch.pop() {
            sender.deliver_one(queued.copy, way, dequeued).await;
        }
        return Vec::new();
    }
    sender.deliver_batch(batch, way, dequeued).await
}

/// Copies to send again go first, counted as waiting again.
fn requeue(pending: &mut VecDeque<Queued>, copies: Vec<Queued>, sender: &Sender) {
    for queued in copies.into_iter().rev() {
        sender.queue_depth().inc();
        pending.push_front(queued);
    }
}

/// A connection for the next batch, if one can be had without waiting.
async fn ready_way(sender: &Sender) -> Option<Way> {
    if let Some(connection) = sender.pool().take().await {
        return Some(Way::Pooled(connection));
    }
    sender.pool().try_slot().map(Way::Dial)
}

/// The next batch off the front of `pending`: a copy whose body streams alone, else the complete
/// copies in a row, within the batch limits.
fn take_batch(pending: &mut VecDeque<Queued>) -> Vec<Queued> {
    let mut batch = Vec::new();
    let mut bytes = 0;
    while let Some(next) = pending.front() {
        let complete = next.copy.is_complete();
        if !batch.is_empty()
            && (!complete || batch.len() >= MAX_BATCH || bytes + next.copy.len() > MAX_BATCH_BYTES)
        {
            break;
        }
        bytes += next.copy.len();
        let Some(next) = pending.pop_front() else {
            break;
        };
        batch.push(next);
        if !complete {
            break;
        }
    }
    batch
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::shadow::{BodyFraming, ShadowRequest};

    fn copy(size: usize, complete: bool) -> Queued {
        let (_, rx) = mpsc::channel(1);
        Queued {
            copy: ShadowRequest {
                head: Bytes::from(vec![b'x'; size]),
                body: if complete {
                    BodyFraming::None
                } else {
                    BodyFraming::Chunked
                },
                body_ready: Vec::new(),
                body_rx: (!complete).then_some(rx),
                is_head: false,
                compare: None,
            },
            retried: false,
        }
    }

    fn sizes(batch: &[Queued]) -> Vec<usize> {
        batch.iter().map(|q| q.copy.len()).collect()
    }

    #[test]
    fn complete_copies_in_a_row_go_together_within_the_limits() {
        let mut pending: VecDeque<Queued> = (1..=20).map(|n| copy(n, true)).collect();
        assert_eq!(
            sizes(&take_batch(&mut pending)),
            (1..=16).collect::<Vec<_>>()
        );
        assert_eq!(sizes(&take_batch(&mut pending)), vec![17, 18, 19, 20]);
        let mut pending: VecDeque<Queued> = [100_000, 100_000, 100_000, 300_000]
            .map(|n| copy(n, true))
            .into();
        assert_eq!(sizes(&take_batch(&mut pending)), vec![100_000, 100_000]);
        assert_eq!(sizes(&take_batch(&mut pending)), vec![100_000]);
        assert_eq!(
            sizes(&take_batch(&mut pending)),
            vec![300_000],
            "alone, but it goes"
        );
    }

    #[test]
    fn a_copy_whose_body_streams_goes_alone() {
        let mut pending: VecDeque<Queued> =
            [copy(1, true), copy(2, false), copy(3, true), copy(4, true)].into();
        assert_eq!(sizes(&take_batch(&mut pending)), vec![1]);
        assert_eq!(sizes(&take_batch(&mut pending)), vec![2]);
        assert_eq!(sizes(&take_batch(&mut pending)), vec![3, 4]);
        assert!(take_batch(&mut pending).is_empty());
    }
}
