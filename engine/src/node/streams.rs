//! Streaming tasks' items, which the node keeps between the worker that
//! produces them and the [`ObjectRefStream`](crate::ObjectRefStream) that
//! takes them. Bookkeeping on [`NodeState`], like `clients.rs`.
//!
//! Design notes
//! - A streaming task has one output, the stream's *end object*, sealed
//!   as any output is (the item count, or the error that ended the task):
//!   failures, retries, cancellation and shutdown need nothing of their own.
//!   A stream is keyed by its end object and made when the first item
//!   arrives or the consumer first asks, while the end is pending.
//! - An item is an ordinary object the node makes when the worker sends it
//!   ([`ToNode::StreamItem`](crate::protocol::ToNode::StreamItem)); the stream
//!   holds one reference to it until the consumer has taken it.
//! - The worker counts positions from 0 in each attempt: an item at a
//!   position the stream already has is a retry's duplicate and is freed,
//!   so a retried task never delivers an item twice.
//! - The consumer asks for position `i`; that says it took the items before
//!   `i`, whose references the stream drops then. Item `i` keeps its own
//!   until that next ask, so an answer lost to a timeout is given again.
//! - Once the end seals, the consumer gets the items left, then the end.
//!   When the end is freed, or the consumer closes the stream, the items
//!   not taken are released (closing also cancels a task still running).
//! - Backpressure: a producer with `n` items not taken pauses
//!   ([`ToNode::Backpressure`](crate::protocol::ToNode::Backpressure)); it is
//!   answered when the consumer has taken enough, or `u64::MAX` once the
//!   stream ended (it stops: no one takes more).

use crate::error::Error;
use crate::protocol::{Placed, STREAM_ENDED, ToClient};

use super::state::{NodeState, ObjectState, ParkedKind, Stream};

impl Stream {
    /// Drop the requests (worker, request) that `gone` says are over.
    fn forget(&mut self, gone: impl Fn(usize, u64) -> bool) {
        self.waiters.retain(|&(w, r, _)| !gone(w, r));
        if self.paused.is_some_and(|(w, r, _)| gone(w, r)) {
            self.paused = None;
        }
    }
}

/// An answer to the consumer: an item's id, the end, or the error.
pub(crate) type StreamAnswer = Result<Option<u64>, Error>;

impl NodeState {
    /// What the end object `end` says of the stream: `None` while its task
    /// runs.
    fn stream_end(&self, end: u64) -> Option<StreamAnswer> {
        match self.objects.get(&end).map(|e| &e.state) {
            None => Some(Err(Error::ObjectNotFound(end))),
            Some(ObjectState::Pending) => None,
            Some(ObjectState::Failed(e)) => Some(Err((**e).clone())),
            Some(_) => Some(Ok(None)),
        }
    }

    /// Item `index` of the stream ending in `end`, for its consumer, which
    /// has taken the items before it: the item's id (the caller counts a
    /// reference for the consumer), the end, or `None` while neither is
    /// there yet.
    pub fn stream_next(&mut self, end: u64, index: u64) -> Option<StreamAnswer> {
        let ended = self.stream_end(end);
        let stream = match self.streams.get_mut(&end) {
            Some(stream) => stream,
            // No item ever came: the end is all there is.
            None if ended.is_some() => return ended,
            None => self.streams.entry(end).or_default(),
        };
        if index < stream.first || index > stream.produced {
            let (first, produced) = (stream.first, stream.produced);
            return Some(Err(Error::InvalidArgument(format!(
                "item {index} of a stream holding items {first}..{produced}"
            ))));
        }
        let mut released = Vec::new();
        while stream.first < index {
            released.extend(stream.items.pop_front());
            stream.first += 1;
        }
        let found = (index < stream.produced).then(|| {
            stream.taken = stream.taken.max(index + 1);
            stream.items[(index - stream.first) as usize]
        });
        for id in released {
            self.release(id);
        }
        match found {
            Some(id) => {
                self.resume_producer(end);
                Some(Ok(Some(id)))
            }
            None => ended,
        }
    }

    /// Answer the paused producer of `end`'s stream if it may go on.
    fn resume_producer(&mut self, end: u64) {
        let ended = self.stream_end(end).is_some();
        let Some(stream) = self.streams.get_mut(&end) else { return };
        let Some((worker, request, until)) = stream.paused else { return };
        if ended || stream.taken >= until {
            stream.paused = None;
            let consumed = if ended { STREAM_ENDED } else { stream.taken };
            self.answer_parked(worker, request, ToClient::Resume { request, consumed });
        }
    }

    /// Answer the parked requests of `end`'s stream that can be answered now.
    fn wake_stream(&mut self, end: u64) {
        let Some(stream) = self.streams.get_mut(&end) else { return };
        for (worker, request, index) in std::mem::take(&mut stream.waiters) {
            match self.stream_next(end, index) {
                None => self.streams.get_mut(&end).expect("kept").waiters.push((worker, request, index)),
                Some(item) => {
                    if let Ok(Some(id)) = item {
                        self.worker_ref(worker, true, id);
                    }
                    self.answer_parked(worker, request, ToClient::StreamItem { request, item });
                }
            }
        }
    }

    /// Item `index` of streaming task `task`, sent by client `worker`, which
    /// runs it. An error is a protocol violation.
    pub fn stream_item(&mut self, worker: usize, task: u64, index: u64, placed: Placed) -> Result<(), String> {
        let end = self.streaming_output(worker, task)?;
        let produced = self.streams.get(&end).map_or(0, |s| s.produced);
        let consumer_gone = self.objects.get(&end).is_some_and(|e| e.refs == 0);
        // Once the end is sealed (the stream closed, the task cancelled),
        // items still on their way are freed, whatever their position.
        let ended = self.stream_end(end).is_some();
        if index > produced && !ended {
            return Err(format!("item {index} of task {task} skips item {produced}"));
        }
        let (state, refs) = self.claim_placed(worker, placed)?;
        if consumer_gone && !ended {
            self.unwanted_streams.push(end);
        }
        if index < produced || consumer_gone || ended {
            // A retry's duplicate, or an item no one will take.
            if let ObjectState::Arena { offset, .. } = state {
                self.allocator.free(offset);
            }
            return Ok(());
        }
        let id = self.new_object(state, refs);
        if let Some(function) = self.tasks.get(&task).map(|t| t.function) {
            self.set_creator(id, function);
        }
        let stream = self.streams.entry(end).or_default();
        stream.items.push_back(id);
        stream.produced += 1;
        if !stream.waiters.is_empty() {
            self.wake_stream(end);
        }
        Ok(())
    }

    /// Client `worker` asks for item `index` of the stream ending in `end`:
    /// answered now, or parked until the item or the end is there. An
    /// error is a protocol violation.
    pub fn client_stream_next(
        &mut self,
        worker: usize,
        request: u64,
        end: u64,
        index: u64,
        task: Option<u64>,
    ) -> Result<(), String> {
        self.check_request_free(worker, request)?;
        if let Some(item) = self.stream_next(end, index) {
            if let Ok(Some(id)) = item {
                self.worker_ref(worker, true, id);
            }
            self.replies.push((worker, ToClient::StreamItem { request, item }));
            return Ok(());
        }
        self.streams.get_mut(&end).expect("made while its end is pending").waiters.push((worker, request, index));
        self.park(worker, request, ParkedKind::StreamNext(end), task);
        Ok(())
    }

    /// Client `worker` is gone: its requests on streams are forgotten.
    pub(super) fn forget_stream_requests(&mut self, worker: usize) {
        for stream in self.streams.values_mut() {
            stream.forget(|w, _| w == worker);
        }
    }

    /// A client stopped waiting in `request` on `end`'s stream.
    pub(super) fn forget_stream_waiter(&mut self, worker: usize, request: u64, end: u64) {
        if let Some(stream) = self.streams.get_mut(&end) {
            stream.forget(|w, r| (w, r) == (worker, request));
        }
    }

    /// Streaming task `task`, run by client `worker`, pauses until its
    /// consumer has taken `consumed` items: parked meanwhile, so its
    /// worker holds no CPU and takes no tasks. An error is a protocol
    /// violation.
    pub fn backpressure(&mut self, worker: usize, request: u64, task: u64, consumed: u64) -> Result<(), String> {
        self.check_request_free(worker, request)?;
        let end = self.streaming_output(worker, task)?;
        if self.stream_end(end).is_some() {
            self.replies.push((worker, ToClient::Resume { request, consumed: STREAM_ENDED }));
            return Ok(());
        }
        let stream = self.streams.entry(end).or_default();
        if let Some((w, r, _)) = stream.paused.replace((worker, request, consumed)) {
            // An attempt that died paused.
            self.answer_parked(w, r, ToClient::Resume { request: r, consumed: STREAM_ENDED });
        }
        self.park(worker, request, ParkedKind::Backpressure(end), None);
        self.resume_producer(end);
        Ok(())
    }

    /// The end object of task `task`, which client `worker` runs.
    fn streaming_output(&self, worker: usize, task: u64) -> Result<u64, String> {
        let runs = self.workers.get(&worker).is_some_and(|s| s.in_flight.contains(&task));
        match self.tasks.get(&task) {
            Some(t) if runs && t.outputs.len() == 1 => Ok(t.outputs[0]),
            _ => Err(format!("task {task} is no streaming task running at this worker")),
        }
    }

    /// The end object `end` was sealed: its stream's waiters get the items
    /// left, then the end; its producer stops pausing.
    pub(super) fn stream_sealed(&mut self, end: u64) {
        self.wake_stream(end);
        self.resume_producer(end);
    }

    /// The consumer of `end`'s stream is gone: cancel the task if it still
    /// runs, release the items it did not take.
    pub fn stream_close(&mut self, end: u64) {
        if self.stream_end(end).is_none() {
            // Its outputs fail at once: items still on their way are freed.
            let _ = self.cancel_object(end, false);
        }
        self.resume_producer(end);
        self.drop_stream(end);
    }

    /// Forget `end`'s stream, releasing what it holds (its end was freed,
    /// or its consumer closed it).
    pub(super) fn drop_stream(&mut self, end: u64) {
        let Some(stream) = self.streams.remove(&end) else { return };
        for (worker, request, _) in stream.waiters {
            let item = Err(Error::ObjectNotFound(end));
            self.answer_parked(worker, request, ToClient::StreamItem { request, item });
        }
        if let Some((worker, request, _)) = stream.paused {
            self.answer_parked(worker, request, ToClient::Resume { request, consumed: STREAM_ENDED });
        }
        for id in stream.items {
            self.release(id);
        }
    }
}
