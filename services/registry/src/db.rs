//! All SQL of the registry service.

use std::collections::HashMap;

use sqlx::PgPool;
use sumud_shared::areas::AreaCatalog;
use sumud_shared::Result;

use crate::changes::{Change, Stored, Versioned};

/// The registry's migrations (schema `registry`).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// What is stored for the given households, in one round trip.
pub async fn stored(pool: &PgPool, ids: &[String]) -> Result<HashMap<String, Stored>> {
    let rows: Vec<(String, i64, String, i32, i64)> = sqlx::query_as(
        "SELECT household_id, version, event_id, src_partition, src_offset \
         FROM registry.households WHERE household_id = ANY($1)",
    )
    .bind(ids)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, version, event_id, partition, offset)| {
            (
                id,
                Stored {
                    version,
                    event_id,
                    partition,
                    offset,
                },
            )
        })
        .collect())
}

/// Column arrays for one set-based upsert.
#[derive(Default)]
struct Columns {
    household_id: Vec<String>,
    version: Vec<i64>,
    removed: Vec<bool>,
    area_code: Vec<Option<String>>,
    governorate: Vec<Option<String>>,
    district: Vec<Option<String>>,
    members: Vec<Option<i32>>,
    welfare_score: Vec<Option<f64>>,
    flags: Vec<String>,
    programmes: Vec<String>,
    channel: Vec<Option<String>>,
    provider: Vec<Option<String>>,
    token: Vec<Option<String>>,
    personal: Vec<Option<String>>,
    event_id: Vec<String>,
    partition: Vec<i32>,
    offset: Vec<i64>,
}

/// Writes the winning change per household in one statement. The
/// `version <` guard makes the write idempotent and safe against a racing
/// writer: an older or equal version never overwrites a newer one.
pub async fn apply(pool: &PgPool, changes: &[Versioned], areas: &AreaCatalog) -> Result<u64> {
    if changes.is_empty() {
        return Ok(0);
    }
    let mut c = Columns::default();
    for v in changes {
        c.household_id.push(v.household_id.clone());
        c.version.push(v.version);
        c.event_id.push(v.event_id.clone());
        c.partition.push(v.partition);
        c.offset.push(v.offset);
        match &v.change {
            Change::Upsert(h) => {
                let path = areas.resolve(&h.area_code);
                c.removed.push(false);
                c.area_code.push(Some(h.area_code.clone()));
                c.governorate
                    .push(path.as_ref().map(|p| p.governorate.clone()));
                c.district.push(path.and_then(|p| p.district));
                c.members.push(Some(h.members));
                c.welfare_score.push(Some(h.welfare_score));
                c.flags.push(
                    h.flags
                        .iter()
                        .map(|f| f.as_str())
                        .collect::<Vec<_>>()
                        .join(","),
                );
                c.programmes.push(h.programmes.join(","));
                c.channel.push(Some(h.payment.channel.as_str().to_owned()));
                c.provider.push(Some(h.payment.provider.clone()));
                c.token.push(Some(h.payment.account_token.clone()));
                c.personal.push(
                    h.personal
                        .as_ref()
                        .map(|p| serde_json::to_string(p).unwrap_or_default()),
                );
            }
            Change::Remove => {
                c.removed.push(true);
                c.area_code.push(None);
                c.governorate.push(None);
                c.district.push(None);
                c.members.push(None);
                c.welfare_score.push(None);
                c.flags.push(String::new());
                c.programmes.push(String::new());
                c.channel.push(None);
                c.provider.push(None);
                c.token.push(None);
                c.personal.push(None);
            }
        }
    }
    let done = sqlx::query(
        r#"
        INSERT INTO registry.households AS h
            (household_id, version, removed, area_code, governorate, district, members,
             welfare_score, flags, programmes, payment_channel, payment_provider, account_token,
             personal, event_id, src_partition, src_offset, updated_at)
        SELECT u.household_id, u.version, u.removed, u.area_code, u.governorate, u.district,
               u.members, u.welfare_score, string_to_array(u.flags, ','),
               string_to_array(u.programmes, ','), u.channel, u.provider, u.token,
               u.personal::jsonb, u.event_id, u.src_partition, u.src_offset, now()
        FROM UNNEST($1::text[], $2::int8[], $3::bool[], $4::text[], $5::text[], $6::text[],
                    $7::int4[], $8::float8[], $9::text[], $10::text[], $11::text[], $12::text[],
                    $13::text[], $14::text[], $15::text[], $16::int4[], $17::int8[])
             AS u(household_id, version, removed, area_code, governorate, district, members,
                  welfare_score, flags, programmes, channel, provider, token, personal,
                  event_id, src_partition, src_offset)
        ON CONFLICT (household_id) DO UPDATE SET
            version = EXCLUDED.version, removed = EXCLUDED.removed,
            area_code = EXCLUDED.area_code, governorate = EXCLUDED.governorate,
            district = EXCLUDED.district, members = EXCLUDED.members,
            welfare_score = EXCLUDED.welfare_score, flags = EXCLUDED.flags,
            programmes = EXCLUDED.programmes, payment_channel = EXCLUDED.payment_channel,
            payment_provider = EXCLUDED.payment_provider, account_token = EXCLUDED.account_token,
            personal = EXCLUDED.personal, event_id = EXCLUDED.event_id,
            src_partition = EXCLUDED.src_partition, src_offset = EXCLUDED.src_offset,
            updated_at = EXCLUDED.updated_at
        WHERE h.version < EXCLUDED.version
        "#,
    )
    .bind(&c.household_id)
    .bind(&c.version)
    .bind(&c.removed)
    .bind(&c.area_code)
    .bind(&c.governorate)
    .bind(&c.district)
    .bind(&c.members)
    .bind(&c.welfare_score)
    .bind(&c.flags)
    .bind(&c.programmes)
    .bind(&c.channel)
    .bind(&c.provider)
    .bind(&c.token)
    .bind(&c.personal)
    .bind(&c.event_id)
    .bind(&c.partition)
    .bind(&c.offset)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}
