//! The whole decode path of outside alert input, as one pure function.
//!
//! Everything on `sumud.alerts.v1` comes from outside agencies: national
//! crisis centres, meteorological services, price monitors. Before the
//! handler touches the database, a message goes through the CloudEvents
//! ladder, the CAP parser (for either form of an alert) and the footprint
//! resolver, or through the typed decode of an indicator reading. Those steps
//! are spread over [`sumud_shared::envelope`], [`crate::cap`] and
//! [`crate::footprint`]; [`decode_untrusted`] chains them exactly as the
//! consumer and [`crate::handler`] do, without Kafka or a database, so that a
//! fuzz target (`fuzz/fuzz_targets/alert_decode.rs`) and a stable replay test
//! (`tests/untrusted_inputs.rs`) can throw arbitrary bytes at all of it.

use std::collections::BTreeSet;
use std::sync::LazyLock;

use chrono::Utc;
use serde_json::Value;
use sumud_shared::areas::AreaCatalog;
use sumud_shared::deadletter::Reason;
use sumud_shared::envelope::{self, DecodeLimits, Envelope, Rejection};
use sumud_shared::events::alert::{IndicatorReading, ALERT_CAP, INDICATOR_READING};
use sumud_shared::schema::SchemaRegistry;

use crate::cap::{self, Decoded};
use crate::footprint::{self, AreaIndex};

/// The event types the alerts service accepts (as its handler declares).
pub const ACCEPTED: [&str; 2] = [ALERT_CAP, INDICATOR_READING];

/// District boundaries of the shipped catalog, indexed once per process.
static INDEX: LazyLock<AreaIndex> =
    LazyLock::new(|| AreaIndex::new(AreaCatalog::default_catalog()));

/// The district index of the shipped catalog, built on first use and shared
/// by every caller of this module (and by the `cap_xml` fuzz target).
pub fn area_index() -> &'static AreaIndex {
    &INDEX
}

/// Outside alert input that passed every decoding step.
#[derive(Debug, Clone)]
pub enum DecodedInput {
    /// An `org.sumud.alert.cap` event.
    Alert {
        /// The validated envelope.
        envelope: Envelope<Value>,
        /// The CAP alert and the XML document it was read from.
        decoded: Box<Decoded>,
        /// Our area codes touched by each `info` block, in order.
        footprints: Vec<BTreeSet<String>>,
    },
    /// An `org.sumud.indicator.reading` event.
    Reading {
        /// The validated envelope.
        envelope: Envelope<Value>,
        /// The reading.
        reading: IndicatorReading,
    },
}

/// Decodes one raw message from `sumud.alerts.v1` as far as it can be
/// decoded without a database: the CloudEvents ladder (default limits, the
/// current time), then for a CAP alert [`cap::decode`] and
/// [`footprint::resolve`] on every `info` block's areas, and for an indicator
/// reading the typed decode of [`IndicatorReading`].
///
/// It is the single entry point the fuzz target and the replay test drive,
/// so it must return a [`Rejection`], never panic, whatever the bytes are.
pub fn decode_untrusted(bytes: &[u8]) -> Result<DecodedInput, Rejection> {
    let envelope = envelope::decode(
        bytes,
        &ACCEPTED,
        SchemaRegistry::global(),
        &DecodeLimits::default(),
        Utc::now(),
    )?;
    match envelope.event_type.as_str() {
        ALERT_CAP => {
            let decoded = cap::decode(&envelope)?;
            let catalog = AreaCatalog::default_catalog();
            let footprints = decoded
                .alert
                .info
                .iter()
                .map(|info| footprint::resolve(&info.areas, catalog, area_index()))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(DecodedInput::Alert {
                envelope,
                decoded: Box::new(decoded),
                footprints,
            })
        }
        INDICATOR_READING => {
            let reading = envelope.typed()?;
            Ok(DecodedInput::Reading { envelope, reading })
        }
        other => Err(Rejection::new(
            Reason::UnknownEventType,
            format!("event type {other:?} is not handled here"),
        )),
    }
}
