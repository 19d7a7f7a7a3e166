//! One module per event family: the Rust type of each event's `data`, its
//! CloudEvents type string and the topic it travels on.

pub mod alert;
pub mod assistance;
pub mod control;
pub mod crisis;
pub mod deadletter;
pub mod entitlement;
pub mod household;
pub mod payment;
pub mod referral;
pub mod task;
