//! Topic creation: the project creates its own topics (`sumud topics ensure`
//! and at service start), so a fresh cluster needs no manual setup. On a
//! cluster with ACLs a service may not create topics; it then leaves them to
//! the administrator (docs/security.md).

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

use tracing::info;

use crate::config::Settings;
use crate::{Error, Result};

/// Creates every topic in `settings.topics` that does not exist yet.
pub async fn ensure_topics(settings: &Settings) -> Result<()> {
    let names: Vec<&str> = settings.topics.all().to_vec();
    ensure(settings, &names, settings.topic_partitions).await
}

/// Creates the named topics with `partitions` each; existing ones are left as
/// they are, and so are those the principal is not authorized to create.
pub async fn ensure(settings: &Settings, names: &[&str], partitions: i32) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = super::client_config(settings).create()?;
    let topics: Vec<NewTopic> = names
        .iter()
        .map(|n| NewTopic::new(n, partitions, TopicReplication::Fixed(1)))
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin.create_topics(topics.iter(), &opts).await?;
    let mut not_ours = Vec::new();
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            // Least privilege (docs/security.md): a service's principal has
            // no Create permission, and Kafka answers "not authorized" whether
            // or not the topic exists. The topics are then an administrator's
            // job (`sumud topics ensure` as the admin principal); a missing one
            // shows up as the service's own consume or produce error.
            Err((topic, RDKafkaErrorCode::TopicAuthorizationFailed)) => not_ours.push(topic),
            Err((topic, code)) => {
                return Err(Error::Other(format!(
                    "could not create topic {topic}: {code}"
                )))
            }
        }
    }
    if !not_ours.is_empty() {
        info!(
            topics = ?not_ours,
            "Not allowed to create these topics; assuming an administrator did."
        );
    }
    Ok(())
}
