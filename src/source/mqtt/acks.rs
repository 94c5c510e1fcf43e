//! What an MQTT source owes the broker: the QoS 1 messages it routed and
//! has not acknowledged yet, and when each may be.
//!
//! A routed chunk's messages go to the inbox writer (`ack_after: inbox`),
//! whose report makes them due at once, or wait for the router to report a
//! checkpoint holding the chunk durable (`ack_after: checkpoint`). Only
//! packet ids are kept (2 bytes a message).
//! Acks due go out through rumqttc's request queue, a few one by one and
//! many in bulk ([`BulkAcks`](crate::mqtt::BulkAcks)), never blocking.

use std::collections::VecDeque;

use rumqttc::{Client, Publish, QoS};

use super::inbox::{InboxLog, Writer};
use crate::mqtt::{ack_of, AckSender};
use crate::pipeline::DecodedChunk;

/// Acknowledgements up to this many go through rumqttc's request queue one
/// by one; more go to the connection thread in bulk.
const ACKS_ONE_BY_ONE: usize = 16;

pub(super) struct Acks {
    client: Client,
    bulk: AckSender,
    /// Packet ids of routed chunks waiting for a durable checkpoint, by chunk.
    unacked: VecDeque<(u64, Vec<u16>)>,
    /// Packet ids due, not yet handed to the connection.
    due: VecDeque<u16>,
    /// The inbox and its writer (`ack_after: inbox`).
    inbox: Option<(InboxLog, Writer)>,
    /// The last chunk a durable checkpoint holds.
    durable: Option<u64>,
    /// When the gauges were last updated.
    gauged: Option<std::time::Instant>,
}

impl Acks {
    pub(super) fn new(client: Client, bulk: AckSender, inbox: Option<(InboxLog, Writer)>) -> Acks {
        Acks {
            client,
            bulk,
            unacked: VecDeque::new(),
            due: VecDeque::new(),
            inbox,
            durable: None,
            gauged: None,
        }
    }

    /// Chunk `seq` of `publishes` is routed: its QoS 1 messages go to the
    /// inbox writer, numbered (the chunk carries the position after them),
    /// or wait for a checkpoint.
    pub(super) fn routed(&mut self, seq: u64, publishes: Vec<Publish>, chunk: &mut DecodedChunk) {
        match &mut self.inbox {
            Some((log, writer)) => {
                let n = publishes.iter().filter(|p| p.qos != QoS::AtMostOnce).count();
                let (first, end) = log.number(seq, n as u64);
                chunk.end_offset = end;
                writer.write(first, publishes);
            }
            None => {
                let pkids = publishes.iter().filter(|p| p.qos != QoS::AtMostOnce).map(|p| p.pkid);
                self.unacked.push_back((seq, pkids.collect()));
            }
        }
    }

    /// The router reports chunks up to `up_to` durable: their messages are
    /// due, and their inbox entries are removed.
    pub(super) fn durable(&mut self, up_to: u64) {
        self.durable = Some(up_to);
        self.release();
    }

    /// Takes the inbox writer's reports: what it wrote is due.
    pub(super) fn take_written(&mut self) {
        let Some((_, writer)) = &mut self.inbox else { return };
        while let Ok(w) = writer.done.try_recv() {
            writer.reported(&w);
            self.due.extend(w.pkids);
        }
    }

    fn release(&mut self) {
        let Some(up_to) = self.durable else { return };
        while self.unacked.front().is_some_and(|(s, _)| *s <= up_to) {
            self.due.extend(self.unacked.pop_front().expect("checked").1);
        }
        if let Some((log, writer)) = &mut self.inbox {
            log.release(up_to, writer);
        }
    }

    /// Hands every acknowledgement due to the connection: a few through
    /// rumqttc's request queue (never blocking on it), more in bulk,
    /// followed by one request that wakes the connection thread.
    pub(super) fn send(&mut self) {
        if self.due.len() > ACKS_ONE_BY_ONE {
            let keep = self.due.len() - 1;
            self.bulk.send(self.due.drain(..keep).collect());
        }
        while let Some(&pkid) = self.due.front() {
            if self.client.try_ack(&ack_of(pkid)).is_err() {
                // Full: the connection loop drains it; try again next round.
                return;
            }
            self.due.pop_front();
        }
    }

    /// Updates the gauges of messages waiting for an ack and in the inbox,
    /// at most every [`super::GAUGES_EVERY`] (`now` past it: at once).
    pub(super) fn gauges(&mut self, source: &str, now: std::time::Instant) {
        if self.gauged.is_some_and(|at| now < at + super::GAUGES_EVERY) {
            return;
        }
        self.gauged = Some(now);
        let waiting = self.unacked.iter().map(|(_, p)| p.len()).sum::<usize>() + self.due.len();
        crate::telemetry::mqtt_unacked(source, waiting);
        if let Some((log, _)) = &self.inbox {
            crate::telemetry::mqtt_inbox(source, log.held());
        }
    }

    /// The source's position now (the inbox entry the next message gets;
    /// 0 without an inbox).
    pub(super) fn position(&self) -> u64 {
        self.inbox.as_ref().map_or(0, |(log, _)| log.position())
    }

    /// Where the inbox writer reports (to wait on with the connection's events).
    pub(super) fn reports(&self) -> Option<&crossbeam_channel::Receiver<super::inbox::Written>> {
        self.inbox.as_ref().map(|(_, w)| &w.done)
    }

    /// Nothing is owed: every routed message is acknowledged at the broker
    /// and every inbox entry a checkpoint holds is removed.
    pub(super) fn settled(&self) -> bool {
        self.unacked.is_empty()
            && self.due.is_empty()
            && self.bulk.settled()
            && self
                .inbox
                .as_ref()
                .is_none_or(|(log, w)| w.pending() == 0 && !log.waiting())
    }

    /// Only a checkpoint, or an inbox write that fails, can settle what is
    /// owed now (the router stopped: no checkpoint will come; the broker
    /// keeps what is not acknowledged).
    pub(super) fn only_checkpoints_left(&self) -> bool {
        self.due.is_empty()
            && self.bulk.settled()
            && self.inbox.as_ref().is_none_or(|(_, w)| w.pending() == 0 || w.failing())
    }

    /// The inbox writer is too far behind (a failing or stalled disk):
    /// read no more messages until it catches up.
    pub(super) fn backlogged(&self) -> bool {
        self.inbox.as_ref().is_some_and(|(_, w)| w.backlogged())
    }

    /// Chunks still waiting for a checkpoint for their acks.
    pub(super) fn unacked_chunks(&self) -> usize {
        self.unacked.len()
    }

    /// Stops the inbox writer once its writes in hand are done.
    pub(super) fn close(&mut self) {
        self.inbox = None;
    }
}
