//! Per-process state of the HTTP front and the admin API that is never persisted: fault rules, call counters, the
//! request log and quota buckets.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use crate::admin::LOG_CAPACITY;
use crate::error::{ApiError, Code};
use crate::faults::{FaultDecision, FaultRule, LogEntry, glob_match};
use crate::quota::Quotas;

/// Per-process, non-persisted state of the admin API.
#[derive(Clone, Debug, Default)]
pub struct Runtime {
    pub faults: Vec<FaultRule>,
    pub next_fault_id: u64,
    /// Calls per method, then per status name.
    pub calls: BTreeMap<String, BTreeMap<String, u64>>,
    pub log: VecDeque<LogEntry>,
    pub quotas: Quotas,
}

impl Runtime {
    pub fn add_fault(&mut self, mut rule: FaultRule) -> u64 {
        self.next_fault_id += 1;
        rule.id = self.next_fault_id;
        self.faults.push(rule);
        self.next_fault_id
    }

    /// Applies the fault rules to a call of `method`; `roll` draws uniform numbers in [0, 1).
    pub fn decide_faults(&mut self, method: &str, roll: &mut dyn FnMut() -> f64) -> FaultDecision {
        let mut decision = FaultDecision::default();
        for rule in &mut self.faults {
            if !glob_match(&rule.method, method) || rule.count == Some(0) {
                continue;
            }
            if let Some(p) = rule.probability
                && roll() >= p
            {
                continue;
            }
            if let Some(c) = rule.count.as_mut() {
                *c -= 1;
            }
            decision.delay += Duration::from_millis(rule.latency_ms);
            if let Some(code) = rule.status {
                let message = rule
                    .message
                    .clone()
                    .unwrap_or_else(|| format!("Injected fault: {}", code.name()));
                decision.fail = Some(ApiError::new(code, message));
                decision.after_commit = rule.commit_then_fail;
                break;
            }
        }
        decision
    }

    pub fn record_call(&mut self, method: &str, code: Code, entry: LogEntry) {
        *self
            .calls
            .entry(method.to_string())
            .or_default()
            .entry(code.name().to_string())
            .or_default() += 1;
        if self.log.len() >= LOG_CAPACITY {
            self.log.pop_front();
        }
        self.log.push_back(entry);
    }

    /// Calls of `method` (all statuses).
    pub fn call_count(&self, method: &str) -> u64 {
        self.calls.get(method).map(|m| m.values().sum()).unwrap_or(0)
    }
}
