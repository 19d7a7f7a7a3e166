//! The field encoders of PostgreSQL's binary `COPY` format, for services
//! that write rows in bulk (the registry's households, disbursement's
//! instructions). Binary spares the database parsing numbers, timestamps
//! and array literals, which in text `COPY` cost about as much as writing
//! the row. Each row is its field count ([`row`]) followed by its fields.

use chrono::{DateTime, Utc};

/// Binary `COPY` signature, flags and (empty) header extension.
pub const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// Binary `COPY` end of data.
pub const TRAILER: &[u8] = &[0xff, 0xff];

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01 UTC).
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// Starts a row of `fields` fields.
pub fn row(out: &mut Vec<u8>, fields: i16) {
    out.extend_from_slice(&fields.to_be_bytes());
}

/// A NULL field.
pub fn null(out: &mut Vec<u8>) {
    out.extend_from_slice(&(-1i32).to_be_bytes());
}

/// A `text` or `bytea` field.
pub fn bytes(out: &mut Vec<u8>, b: &[u8]) {
    // Fields are far below 2 GiB: messages and rows are limited long before.
    out.extend_from_slice(&(b.len() as i32).to_be_bytes());
    out.extend_from_slice(b);
}

/// A `boolean` field.
pub fn boolean(out: &mut Vec<u8>, b: bool) {
    out.extend_from_slice(&1i32.to_be_bytes());
    out.push(u8::from(b));
}

/// An `integer` field.
pub fn int4(out: &mut Vec<u8>, n: i32) {
    out.extend_from_slice(&4i32.to_be_bytes());
    out.extend_from_slice(&n.to_be_bytes());
}

/// A `bigint` field.
pub fn int8(out: &mut Vec<u8>, n: i64) {
    out.extend_from_slice(&8i32.to_be_bytes());
    out.extend_from_slice(&n.to_be_bytes());
}

/// A `double precision` field.
pub fn float8(out: &mut Vec<u8>, x: f64) {
    out.extend_from_slice(&8i32.to_be_bytes());
    out.extend_from_slice(&x.to_bits().to_be_bytes());
}

/// A `timestamptz` field (microsecond precision, as PostgreSQL keeps it).
pub fn timestamptz(out: &mut Vec<u8>, t: DateTime<Utc>) {
    int8(out, t.timestamp_micros() - PG_EPOCH_MICROS);
}

/// Reserves a field's length word; [`field_end`] fills it in.
pub fn field_start(out: &mut Vec<u8>) -> usize {
    out.extend_from_slice(&[0; 4]);
    out.len()
}

/// Fills in the length word reserved at `at`.
pub fn field_end(out: &mut [u8], at: usize) {
    let len = (out.len() - at) as i32;
    out[at - 4..at].copy_from_slice(&len.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timestamp_counts_microseconds_from_2000() {
        let mut out = Vec::new();
        timestamptz(
            &mut out,
            DateTime::parse_from_rfc3339("2000-01-01T00:00:01.000002Z")
                .unwrap()
                .to_utc(),
        );
        assert_eq!(out[..4], 8i32.to_be_bytes());
        assert_eq!(i64::from_be_bytes(out[4..].try_into().unwrap()), 1_000_002);
    }

    #[test]
    fn a_field_of_unknown_length_gets_its_length_afterwards() {
        let mut out = vec![9];
        let at = field_start(&mut out);
        out.extend_from_slice(b"abc");
        field_end(&mut out, at);
        assert_eq!(out, [9, 0, 0, 0, 3, b'a', b'b', b'c']);
    }
}
