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
    /// Field-verification tasks as disbursement announces them, written by
    /// disbursement alone (a topic of its own, so that no field app can
    /// pass for disbursement to another follower).
    #[serde(default = "default_tasks")]
    pub tasks: String,
    /// Field teams' signed commands on tasks.
    #[serde(default = "default_task_commands")]
    pub task_commands: String,
    /// Partner agencies' signed records of assistance they gave.
    #[serde(default = "default_assistance")]
    pub assistance: String,
    /// Sumud's own assistance for the partner agencies, written by
    /// eligibility alone (a topic of its own, so that no agency that may
    /// write the partners' topic can pass for Sumud).
    #[serde(default = "default_assistance_shared")]
    pub assistance_shared: String,
    /// Social-service referrals, written by eligibility alone.
    #[serde(default = "default_referrals")]
    pub referrals: String,
    /// Service providers' signed answers to referrals.
    #[serde(default = "default_referral_answers")]
    pub referral_answers: String,
    /// Rejected messages with their reason.
    pub deadletter: String,
}

fn default_tasks() -> String {
    "sumud.tasks.v1".into()
}

fn default_task_commands() -> String {
    "sumud.tasks.commands.v1".into()
}

fn default_assistance() -> String {
    "sumud.assistance.v1".into()
}

fn default_assistance_shared() -> String {
    "sumud.assistance.shared.v1".into()
}

fn default_referrals() -> String {
    "sumud.referrals.v1".into()
}

fn default_referral_answers() -> String {
    "sumud.referrals.answers.v1".into()
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
            task_commands: default_task_commands(),
            assistance: default_assistance(),
            assistance_shared: default_assistance_shared(),
            referrals: default_referrals(),
            referral_answers: default_referral_answers(),
            deadletter: "sumud.deadletter.v1".into(),
        }
    }
}

impl Topics {
    /// Every topic name, for creation and ACL documentation.
    pub fn all(&self) -> [&str; 14] {
        [
            &self.control,
            &self.alerts,
            &self.registry,
            &self.crisis,
            &self.entitlements,
            &self.instructions,
            &self.status,
            &self.tasks,
            &self.task_commands,
            &self.assistance,
            &self.assistance_shared,
            &self.referrals,
            &self.referral_answers,
            &self.deadletter,
        ]
    }

    /// Whether `event_type` travels on `topic`: each event type has one
    /// topic, written by its producer (docs/security.md says who may write
    /// which). A consumer refuses a type found on another of these topics,
    /// whose writers are someone else. Topics not named here carry anything.
    pub fn carries(&self, topic: &str, event_type: &str) -> bool {
        use crate::events::{
            alert, assistance, control, crisis, deadletter, entitlement, household, payment,
            referral, task,
        };
        let types: &[&str] = if topic == self.control {
            &[control::CONTROL_COMMAND]
        } else if topic == self.alerts {
            &[alert::ALERT_CAP, alert::INDICATOR_READING]
        } else if topic == self.registry {
            &[household::HOUSEHOLD_UPSERTED, household::HOUSEHOLD_REMOVED]
        } else if topic == self.crisis {
            &crisis::CRISIS_EVENTS
        } else if topic == self.entitlements {
            &[entitlement::ENTITLEMENT_DECIDED]
        } else if topic == self.instructions {
            &[payment::INSTRUCTION_ISSUED]
        } else if topic == self.status {
            &[payment::PAYMENT_STATUS]
        } else if topic == self.tasks {
            &task::TASK_EVENTS
        } else if topic == self.task_commands {
            &[task::TASK_COMMAND]
        } else if topic == self.assistance {
            &[assistance::PARTNER_ASSISTANCE]
        } else if topic == self.assistance_shared {
            &[assistance::SUMUD_ASSISTANCE]
        } else if topic == self.referrals {
            &[referral::REFERRAL_RECORDED]
        } else if topic == self.referral_answers {
            &[referral::REFERRAL_ACKNOWLEDGED]
        } else if topic == self.deadletter {
            &[deadletter::DEADLETTER_RECORDED]
        } else {
            return true;
        };
        types.contains(&event_type)
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
            task_commands: s(&self.task_commands),
            assistance: s(&self.assistance),
            assistance_shared: s(&self.assistance_shared),
            referrals: s(&self.referrals),
            referral_answers: s(&self.referral_answers),
            deadletter: s(&self.deadletter),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_event_type_travels_on_its_own_topic_only() {
        let t = Topics::default().with_suffix("x");
        assert!(t.carries(&t.crisis, "org.sumud.crisis.activated"));
        assert!(t.carries(&t.task_commands, "org.sumud.task.command"));
        assert!(t.carries(&t.tasks, "org.sumud.task.resolved"));
        // A field app's topic cannot carry disbursement's announcements,
        // nor disbursement's topic a field command.
        assert!(!t.carries(&t.task_commands, "org.sumud.task.resolved"));
        assert!(!t.carries(&t.tasks, "org.sumud.task.command"));
        assert!(t.carries(&t.status, "org.sumud.payment.status_reported"));
        // What field apps or providers may write cannot pass for control's
        // or eligibility's words.
        for forged in [
            "org.sumud.crisis.activated",
            "org.sumud.entitlement.decided",
            "org.sumud.payment.status_reported",
        ] {
            assert!(!t.carries(&t.task_commands, forged), "{forged}");
        }
        assert!(!t.carries(&t.status, "org.sumud.crisis.activated"));
        assert!(!t.carries(&t.registry, "org.sumud.crisis.closed"));
        assert!(!t.carries(&t.crisis, "org.sumud.task.resolved"));
        assert!(t.carries("someone.elses.topic", "org.sumud.crisis.activated"));
    }
}
