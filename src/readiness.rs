//! Whether the process is ready for traffic, and if not, why.
//!
//! Several parts of a process know a reason to be not ready — the worker while topics it reads
//! do not exist yet, before its first partition assignment or while its partitions are paused on a failing batch, the Kafka
//! client while the broker is unreachable — and `/readyz` must say all of them. Each part
//! sets or clears its own [`Condition`]; the process is ready when none is set. One shared
//! handle, built by the composition root and given to whoever reports.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

/// One reason a process can be not ready, set and cleared by the part that knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Condition {
    /// Topics the worker reads do not exist yet (it waits for them before it subscribes).
    Topics,
    /// The worker has not been assigned partitions yet.
    Assignment,
    /// The worker paused its partitions because a batch failed and is being retried.
    Paused,
    /// The broker has been unreachable for longer than the grace period.
    Broker,
    /// Set by an embedding program or a test.
    Other,
}

/// A readiness handle shared by the whole process; ready unless a condition is set.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<RwLock<BTreeMap<Condition, String>>>);

impl Readiness {
    /// Sets `condition` with the reason `/readyz` reports.
    pub fn set(&self, condition: Condition, reason: impl Into<String>) {
        self.write().insert(condition, reason.into());
    }

    /// Clears `condition`.
    pub fn clear(&self, condition: Condition) {
        self.write().remove(&condition);
    }

    /// Marks the process not ready for a reason of an embedding program's own.
    pub fn set_not_ready(&self, reason: impl Into<String>) {
        self.set(Condition::Other, reason);
    }

    /// Clears the embedding program's own reason.
    pub fn set_ready(&self) {
        self.clear(Condition::Other);
    }

    /// `Err` with every reason, joined, while any condition is set.
    pub fn check(&self) -> Result<(), String> {
        let conditions = self.0.read().unwrap_or_else(|p| p.into_inner());
        if conditions.is_empty() {
            Ok(())
        } else {
            Err(conditions.values().cloned().collect::<Vec<_>>().join("; "))
        }
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<Condition, String>> {
        self.0.write().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_no_condition_is_set_and_every_reason_is_said() {
        let r = Readiness::default();
        assert!(r.check().is_ok());
        r.set(Condition::Assignment, "no partitions assigned yet");
        r.set(Condition::Paused, "partitions paused");
        assert_eq!(
            r.check().unwrap_err(),
            "no partitions assigned yet; partitions paused"
        );
        r.clear(Condition::Assignment);
        assert_eq!(r.check().unwrap_err(), "partitions paused");
        // A clone is the same handle.
        r.clone().clear(Condition::Paused);
        assert!(r.check().is_ok());
    }
}
