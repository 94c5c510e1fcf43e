//! The HTTP API's requests: the API asks the router (which knows where
//! every twin lives and starts those not in memory) rather than a shared
//! map of twins; a write waits until the epoch holding it is durable.

use super::Router;
use crate::engine::host::Question;
use crate::engine::query::{Gather, Request};
use crate::engine::worker::{AskTwin, SurveyAll};

impl Router {
    /// A question from the HTTP API: sent to the twin it is about (started
    /// from the store when not in memory), or to every worker. An asset no
    /// topology entry matches gets no answer (its reply is dropped).
    pub(super) fn on_request(&mut self, r: Request) {
        let ask = |router: &mut Router, asset: &str, start: bool, dirty: bool, question: Question| {
            if !router.sharding.owns(router.sharding.shard_of(asset)) {
                return false;
            }
            let entry = match router.directory.twins.get(asset) {
                Some(_) => 0,
                None if !start => return false,
                None => match router.index.resolve(asset) {
                    Some(e) => e,
                    None => return false,
                },
            };
            let (worker, local, create) = router.twin_ref(asset, entry, dirty);
            router.workers[worker].do_send(AskTwin {
                local,
                create,
                question,
            });
            true
        };
        match r {
            Request::Twin { asset, start, reply } => {
                ask(self, &asset, start, false, Question::View(reply));
            }
            Request::Copy { asset, start, reply } => {
                ask(self, &asset, start, false, Question::Copy(reply));
            }
            Request::Survey { reply } => {
                let gather = Gather::new(reply);
                for worker in &self.workers {
                    worker.do_send(SurveyAll { gather: gather.clone() });
                }
            }
            Request::AckAlert {
                asset,
                start,
                rule,
                seq,
                reply,
                durable,
            } => {
                if ask(self, &asset, start, true, Question::Ack { rule, seq, reply }) {
                    // The twin is dirty for the next epoch, whose barrier
                    // follows the acknowledgement in its mailbox.
                    self.epochs.wait_durable(durable);
                }
            }
            Request::Command {
                asset,
                start,
                command,
                value,
                key,
                reply,
                durable,
            } => {
                let question = Question::Command {
                    command,
                    value,
                    key,
                    reply,
                };
                if ask(self, &asset, start, true, question) {
                    self.epochs.wait_durable(durable);
                }
            }
        }
    }
}
