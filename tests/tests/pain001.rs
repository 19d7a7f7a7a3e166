//! The pain.001 export validates against the ISO 20022 XSD (pain.001.001.09)
//! with xmllint. `scripts/test.sh` fetches the XSD (from the `sepaxml`
//! package on PyPI) and installs xmllint, and points SUMUD_PAIN001_XSD at it.

use std::process::Command;

use chrono::{DateTime, Utc};
use sumud_disbursement::db::InstructionRow;
use sumud_disbursement::instruction::{beneficiary_ref, instruction_id};
use sumud_disbursement::pain001::{document, Debtor};

fn rows() -> Vec<InstructionRow> {
    (0..5)
        .map(|i| InstructionRow {
            instruction_id: instruction_id(
                "FL-2026-MN",
                &format!("HH-{i}"),
                "horizontal",
                1 + (i as u32 % 2),
            ),
            attempt: 1 + (i as i32 % 2),
            crisis_id: "FL-2026-MN".into(),
            crisis_revision: 2,
            beneficiary_ref: beneficiary_ref("secret", &format!("HH-{i}")),
            account_token: format!("tok_{i:016x}"),
            amount_minor: 87_500 + i,
            currency: "JOD".into(),
            channel: "bank".into(),
            provider: "bank-a".into(),
            tranche: 1 + (i as i32 % 2),
            part: 0,
            scheduled_at: DateTime::parse_from_rfc3339(if i % 2 == 0 {
                "2026-12-01T08:00:00Z"
            } else {
                "2026-12-31T08:00:00Z"
            })
            .unwrap()
            .with_timezone(&Utc),
        })
        .collect()
}

#[test]
fn the_pain001_export_is_valid_against_the_iso_20022_schema() {
    let xsd = std::env::var("SUMUD_PAIN001_XSD").expect(
        "SUMUD_PAIN001_XSD is not set: run the tests with scripts/test.sh, which fetches the XSD",
    );
    let debtor = Debtor {
        name: "Ministry of Social Development".into(),
        account: "CRISIS-FL-2026-MN".into(),
    };
    let xml = document(
        "FL-2026-MN-bank-a-20261201080000",
        Utc::now(),
        &debtor,
        &rows(),
    );
    let file = std::env::temp_dir().join(format!("pain001-{}.xml", std::process::id()));
    std::fs::write(&file, &xml).unwrap();
    let out = Command::new("xmllint")
        .args(["--noout", "--schema", &xsd])
        .arg(&file)
        .output()
        .expect("xmllint runs");
    assert!(
        out.status.success(),
        "xmllint: {}\n{xml}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        xml.matches("<PmtInf>").count(),
        2,
        "one payment block per execution date"
    );
    // And a broken document is refused, so the check can fail.
    let broken = xml.replacen("<PmtMtd>TRF</PmtMtd>", "<PmtMtd>CASH</PmtMtd>", 1);
    std::fs::write(&file, broken).unwrap();
    let out = Command::new("xmllint")
        .args(["--noout", "--schema", &xsd])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    std::fs::remove_file(&file).ok();
}
