//! Per-process state that is never persisted: fault rules, call counters, the request log, quota buckets,
//! revision timing and the link to the live runtime.

use std::collections::{BTreeMap, HashMap, VecDeque};

use crate::faults::{FaultRule, LogEntry};
use crate::quota::Bucket;

/// Per-process, non-persisted state of the admin API.
#[derive(Clone, Debug, Default)]
pub struct Runtime {
    pub faults: Vec<FaultRule>,
    pub next_fault_id: u64,
    /// Calls per method, then per status name.
    pub calls: BTreeMap<String, BTreeMap<String, u64>>,
    pub log: VecDeque<LogEntry>,
    pub buckets: HashMap<(String, crate::quota::QuotaKind), Bucket>,
    pub timing: crate::run::Timing,
    /// The old lenient mode: while no account is seeded or created, every well-formed account exists.
    pub any_account_exists: bool,
    /// The live runtime, when some image has a command (`Config::run_images`).
    pub live: Option<crate::run::LiveLink>,
}
