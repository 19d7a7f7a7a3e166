//! The `sumud` command line: what operators and newcomers type. Each
//! subcommand lives in its own module; `args.rs` is what clap parses,
//! `dispatch.rs` hands each command to its module, and `main.rs` only runs
//! that.

pub mod alerts_cmd;
pub mod args;
pub mod caseload_cmd;
pub mod closed_sets;
pub mod crisis_cmd;
pub mod deadletter_cmd;
pub mod demo;
pub mod dispatch;
#[cfg(feature = "embedded-broker")]
pub mod embedded;
pub mod explain_cmd;
pub mod field_keys_cmd;
pub mod grievances_cmd;
pub mod ledger_cmd;
pub mod operators_cmd;
pub mod partner_list;
pub mod partners_cmd;
pub mod payments_cmd;
pub mod providers_cmd;
pub mod referrals_cmd;
pub mod registry_cmd;
pub mod registry_csv;
pub mod statement_cmd;
pub mod tasks_cmd;
pub mod topics_cmd;
pub mod up;
pub mod verdict;
