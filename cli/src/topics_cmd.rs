//! `sumud topics ensure`: create every topic the pipeline uses.

use sumud_shared::config::Settings;
use sumud_shared::kafka::admin;

/// Creates missing topics with `partitions` each and lists them.
pub async fn ensure(settings: &Settings, partitions: Option<i32>) -> anyhow::Result<()> {
    let mut s = settings.clone();
    if let Some(p) = partitions {
        s.topic_partitions = p;
    }
    admin::ensure_topics(&s).await?;
    for t in s.topics.all() {
        println!("{t}");
    }
    Ok(())
}
