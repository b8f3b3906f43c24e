//! Admission: concurrency slots, the bounded `created` queue and start-rate limits.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use crate::clock::Timestamp;
use crate::identity::UserId;
use crate::ids::TaskId;

const WINDOW: Duration = Duration::from_secs(60);

/// Per-user rate windows kept before idle ones (no start in the last minute) are dropped.
const SWEEP_ABOVE: usize = 1024;

/// Admission limits (builder settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    pub(crate) global_concurrency: usize,
    pub(crate) user_concurrency: usize,
    pub(crate) global_rate_per_minute: usize,
    pub(crate) user_rate_per_minute: usize,
    pub(crate) queue: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            global_concurrency: 50,
            user_concurrency: 10,
            global_rate_per_minute: 1000,
            user_rate_per_minute: 100,
            queue: 1000,
        }
    }
}

/// A run waiting for a slot, or holding one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ticket {
    pub(crate) id: TaskId,
    pub(crate) owner: Option<UserId>,
}

#[derive(Debug)]
pub(crate) struct Admission {
    limits: Limits,
    running: usize,
    running_by_user: HashMap<UserId, usize>,
    queue: VecDeque<Ticket>,
    starts: VecDeque<Timestamp>,
    starts_by_user: HashMap<UserId, VecDeque<Timestamp>>,
    /// `starts_by_user` is swept when it grows past this (doubling, so sweeps stay rare):
    /// user ids come from requests, so idle windows must not pile up.
    sweep_at: usize,
}

/// Why a new run cannot be admitted.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    RateLimited(Duration),
    QueueFull(usize),
}

fn prune(window: &mut VecDeque<Timestamp>, now: Timestamp) {
    while window.front().is_some_and(|t| now.since(*t) >= WINDOW) {
        window.pop_front();
    }
}

fn retry_after(window: &VecDeque<Timestamp>, now: Timestamp) -> Duration {
    window
        .front()
        .map_or(WINDOW, |oldest| WINDOW.saturating_sub(now.since(*oldest)))
        .max(Duration::from_secs(1))
}

impl Admission {
    pub(crate) fn new(limits: Limits) -> Self {
        Self {
            limits,
            running: 0,
            running_by_user: HashMap::new(),
            queue: VecDeque::new(),
            starts: VecDeque::new(),
            starts_by_user: HashMap::new(),
            sweep_at: SWEEP_ABOVE,
        }
    }

    /// Checks that a new run may be created now: under the start rate and, when no slot is
    /// free, with room in the queue. Records the start when it passes. The per-user limits do
    /// not apply to the service identity.
    pub(crate) fn check_new(
        &mut self,
        owner: Option<&UserId>,
        now: Timestamp,
    ) -> Result<(), Refusal> {
        prune(&mut self.starts, now);
        if self.starts.len() >= self.limits.global_rate_per_minute {
            return Err(Refusal::RateLimited(retry_after(&self.starts, now)));
        }
        if let Some(window) = owner.and_then(|u| self.starts_by_user.get_mut(u)) {
            prune(window, now);
            if window.len() >= self.limits.user_rate_per_minute {
                return Err(Refusal::RateLimited(retry_after(window, now)));
            }
        }
        if !self.has_slot(owner) && self.queue.len() >= self.limits.queue {
            return Err(Refusal::QueueFull(self.limits.queue));
        }
        self.starts.push_back(now);
        if let Some(user) = owner {
            self.starts_by_user
                .entry(user.clone())
                .or_default()
                .push_back(now);
            if self.starts_by_user.len() > self.sweep_at {
                self.sweep(now);
            }
        }
        Ok(())
    }

    /// Drops the rate windows of users with no start in the last minute.
    fn sweep(&mut self, now: Timestamp) {
        self.starts_by_user.retain(|_, window| {
            prune(window, now);
            !window.is_empty()
        });
        self.sweep_at = (self.starts_by_user.len() * 2).max(SWEEP_ABOVE);
    }

    fn has_slot(&self, owner: Option<&UserId>) -> bool {
        self.running < self.limits.global_concurrency
            && owner.is_none_or(|u| {
                self.running_by_user.get(u).copied().unwrap_or(0) < self.limits.user_concurrency
            })
    }

    fn take_slot(&mut self, owner: Option<&UserId>) {
        self.running += 1;
        if let Some(u) = owner {
            *self.running_by_user.entry(u.clone()).or_insert(0) += 1;
        }
    }

    /// Takes a slot for `ticket` (true: run it now) or queues it (false).
    pub(crate) fn admit(&mut self, ticket: Ticket) -> bool {
        if self.queue.iter().any(|t| t.id == ticket.id) {
            return false;
        }
        if self.has_slot(ticket.owner.as_ref()) {
            self.take_slot(ticket.owner.as_ref());
            true
        } else {
            self.queue.push_back(ticket);
            false
        }
    }

    /// Gives back `owner`'s slot and returns the queued runs that now hold one.
    pub(crate) fn release(&mut self, owner: Option<&UserId>) -> Vec<Ticket> {
        self.running = self.running.saturating_sub(1);
        if let Some(u) = owner
            && let Some(n) = self.running_by_user.get_mut(u)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.running_by_user.remove(u);
            }
        }
        let mut admitted = Vec::new();
        let mut i = 0;
        while i < self.queue.len() && self.running < self.limits.global_concurrency {
            if self.has_slot(self.queue[i].owner.as_ref()) {
                let ticket = self.queue.remove(i).expect("index checked against len");
                self.take_slot(ticket.owner.as_ref());
                admitted.push(ticket);
            } else {
                i += 1;
            }
        }
        admitted
    }

    /// Slots no run holds or waits for: how many more runs this process could start now.
    pub(crate) fn idle_slots(&self) -> usize {
        self.limits
            .global_concurrency
            .saturating_sub(self.running + self.queue.len())
    }

    /// Drops a queued run (stopped or cancelled before it got a slot).
    pub(crate) fn forget(&mut self, id: TaskId) {
        self.queue.retain(|t| t.id != id);
    }

    #[cfg(test)]
    pub(crate) fn queued(&self) -> usize {
        self.queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(s: &str) -> UserId {
        UserId::new(s).expect("valid")
    }

    #[test]
    fn per_user_limit_and_queue() {
        let mut a = Admission::new(Limits {
            global_concurrency: 3,
            user_concurrency: 1,
            queue: 1,
            ..Limits::default()
        });
        let ann = user("ann");
        let t = |id, owner: Option<UserId>| Ticket {
            id: TaskId(id),
            owner,
        };
        assert!(a.admit(t(1, Some(ann.clone()))));
        assert!(
            !a.admit(t(2, Some(ann.clone()))),
            "second run of ann queues"
        );
        assert!(
            a.admit(t(3, None)),
            "service identity is not per-user limited"
        );
        assert_eq!(
            a.check_new(Some(&ann), Timestamp::from_millis(0)),
            Err(Refusal::QueueFull(1))
        );
        let admitted = a.release(Some(&ann));
        assert_eq!(admitted, vec![t(2, Some(ann))]);
        assert_eq!(a.queued(), 0);
    }

    #[test]
    fn idle_rate_windows_of_many_users_are_dropped() {
        let mut a = Admission::new(Limits {
            queue: usize::MAX,
            ..Limits::default()
        });
        let global = Limits::default().global_rate_per_minute;
        let t0 = Timestamp::from_millis(1_000_000);
        // Attacker-chosen user ids, one start each: the global rate admits `global` of them
        // a minute, and a refused start leaves no window behind.
        let mut accepted = 0;
        for i in 0..10_000 {
            accepted += usize::from(a.check_new(Some(&user(&format!("m0-{i}"))), t0).is_ok());
        }
        assert_eq!(accepted, global);
        assert_eq!(a.starts_by_user.len(), global);
        // Ten more minutes of new users: idle windows go, the map stays bounded.
        for minute in 1..=10u64 {
            let now = t0.plus(WINDOW * u32::try_from(minute).expect("small"));
            for i in 0..global {
                assert!(
                    a.check_new(Some(&user(&format!("m{minute}-{i}"))), now)
                        .is_ok()
                );
            }
            assert!(
                a.starts_by_user.len() <= 2 * global.max(SWEEP_ABOVE) + 1,
                "{} windows after minute {minute}",
                a.starts_by_user.len()
            );
        }
        assert!(
            a.starts_by_user
                .keys()
                .all(|u| !u.as_str().starts_with("m0-")),
            "a window idle for ten minutes survived"
        );
    }

    #[test]
    fn rate_limit_window() {
        let mut a = Admission::new(Limits {
            user_rate_per_minute: 2,
            ..Limits::default()
        });
        let ann = user("ann");
        let t0 = Timestamp::from_millis(1_000_000);
        assert!(a.check_new(Some(&ann), t0).is_ok());
        assert!(a.check_new(Some(&ann), t0).is_ok());
        match a.check_new(Some(&ann), t0.plus(Duration::from_secs(10))) {
            Err(Refusal::RateLimited(d)) => assert_eq!(d, Duration::from_secs(50)),
            other => panic!("expected rate limit, got {other:?}"),
        }
        assert!(
            a.check_new(None, t0).is_ok(),
            "service identity has its own budget"
        );
        assert!(a.check_new(Some(&ann), t0.plus(WINDOW)).is_ok());
    }
}
