//! `sumud completions` and `sumud man` answer from the command-line parser
//! alone: a packager or an operator's shell setup runs them where the
//! pipeline's settings are absent or wrong, and they must not fail there.
//! Runs the real binary with a setting no service would accept.

use std::process::Command;

#[test]
fn completions_and_man_pages_do_not_read_the_settings() {
    let dir = std::env::temp_dir().join(format!("sumud-man-{}", uuid::Uuid::new_v4()));
    let sumud = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_sumud"));
        c.env("SUMUD_TOPIC_PARTITIONS", "not-a-number");
        c
    };

    let completions = sumud().args(["completions", "bash"]).output().unwrap();
    let man = sumud().arg("man").arg("--out").arg(&dir).output().unwrap();
    // The same environment stops a command that does need the settings.
    let list = sumud().args(["crisis", "list"]).output().unwrap();

    assert!(
        completions.status.success(),
        "{}",
        String::from_utf8_lossy(&completions.stderr)
    );
    assert!(String::from_utf8_lossy(&completions.stdout).contains("_sumud()"));
    assert!(
        man.status.success(),
        "{}",
        String::from_utf8_lossy(&man.stderr)
    );
    assert!(
        dir.join("sumud.1").exists(),
        "no sumud.1 in {}",
        dir.display()
    );
    assert!(!list.status.success(), "a bad setting went unnoticed");
    assert!(
        String::from_utf8_lossy(&list.stderr).contains("SUMUD_TOPIC_PARTITIONS"),
        "{}",
        String::from_utf8_lossy(&list.stderr)
    );
    std::fs::remove_dir_all(&dir).ok();
}
