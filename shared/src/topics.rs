//! Topic names. Defaults follow `sumud.<stream>.v1`; every name can be
//! overridden by configuration so that several deployments (or tests) can
//! share one cluster.

use serde::{Deserialize, Serialize};

/// The names of every topic the pipeline uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topics {
    /// Signed operator commands.
    pub control: String,
    /// Early-warning alerts and indicator readings.
    pub alerts: String,
    /// Household upserts and removals from the social registry.
    pub registry: String,
    /// The crisis lifecycle.
    pub crisis: String,
    /// Eligibility decisions.
    pub entitlements: String,
    /// Disbursement instructions to payment providers.
    pub instructions: String,
    /// Payment status reported by providers.
    pub status: String,
    /// Field-verification tasks: disbursement's task events and field
    /// teams' signed commands.
    #[serde(default = "default_tasks")]
    pub tasks: String,
    /// Rejected messages with their reason.
    pub deadletter: String,
}

fn default_tasks() -> String {
    "sumud.tasks.v1".into()
}

impl Default for Topics {
    fn default() -> Self {
        Topics {
            control: "sumud.control.v1".into(),
            alerts: "sumud.alerts.v1".into(),
            registry: "sumud.registry.v1".into(),
            crisis: "sumud.crisis.v1".into(),
            entitlements: "sumud.entitlements.v1".into(),
            instructions: "sumud.payments.instructions.v1".into(),
            status: "sumud.payments.status.v1".into(),
            tasks: default_tasks(),
            deadletter: "sumud.deadletter.v1".into(),
        }
    }
}

impl Topics {
    /// Every topic name, for creation and ACL documentation.
    pub fn all(&self) -> [&str; 9] {
        [
            &self.control,
            &self.alerts,
            &self.registry,
            &self.crisis,
            &self.entitlements,
            &self.instructions,
            &self.status,
            &self.tasks,
            &self.deadletter,
        ]
    }

    /// The same topics with a suffix appended to each name; tests use this
    /// to get private topics on a shared broker.
    pub fn with_suffix(&self, suffix: &str) -> Self {
        let s = |t: &String| format!("{t}.{suffix}");
        Topics {
            control: s(&self.control),
            alerts: s(&self.alerts),
            registry: s(&self.registry),
            crisis: s(&self.crisis),
            entitlements: s(&self.entitlements),
            instructions: s(&self.instructions),
            status: s(&self.status),
            tasks: s(&self.tasks),
            deadletter: s(&self.deadletter),
        }
    }
}
