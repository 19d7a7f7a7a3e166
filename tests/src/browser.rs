//! Headless Chromium for the end-to-end tests of the dashboard page,
//! driven through the DevTools protocol over a pipe
//! (`--remote-debugging-pipe`: JSON messages separated by NUL bytes on file
//! descriptors 3 and 4). A pipe needs no WebSocket client and no port, so
//! the only dependency is Debian's `chromium` package, which
//! `scripts/chromium.sh` installs.
//!
//! The test observes one page over time — the DOM as the page's script
//! updates it from the event stream — instead of dumping a fresh page
//! after each step, which is what proves the page updates without reloading.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// Where Debian's package puts the browser.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// How long one protocol call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A running headless Chromium with a private profile.
pub struct Browser {
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
    next_id: u64,
    profile: PathBuf,
}

/// A tab, attached with its own protocol session.
#[derive(Debug, Clone)]
pub struct Page {
    session: String,
}

impl Browser {
    /// Starts Chromium on a fresh profile directory. Panics with what to do
    /// when it is not installed: the tests never skip.
    pub async fn launch() -> Browser {
        assert!(
            std::path::Path::new(CHROMIUM).exists(),
            "{CHROMIUM} is missing; run scripts/chromium.sh (scripts/test.sh does)"
        );
        let profile =
            std::env::temp_dir().join(format!("sumud-chromium-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&profile).expect("create the browser profile directory");
        let log = std::fs::File::create(profile.join("chromium.log")).expect("browser log");
        // The shell only moves our pipes to fds 3 and 4, where Chromium
        // expects the protocol, and then becomes Chromium (exec).
        // TMPDIR inside the profile: whatever Chromium leaves there goes with it.
        std::fs::create_dir_all(profile.join("tmp")).expect("create the browser temp directory");
        let script = format!(
            "TMPDIR='{}/tmp' exec {CHROMIUM} --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
             --disable-background-networking --disable-component-update --disable-sync \
             --disable-dev-shm-usage --user-data-dir='{}' --remote-debugging-pipe about:blank \
             3<&0 4>&1 0</dev/null 1>/dev/null",
            profile.display(),
            profile.display()
        );
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .expect("start chromium");
        let input = child.stdin.take().expect("piped stdin");
        let output = BufReader::new(child.stdout.take().expect("piped stdout"));
        Browser {
            child,
            input,
            output,
            next_id: 0,
            profile,
        }
    }

    /// Sends one protocol command and waits for its answer (events that
    /// arrive meanwhile are skipped: the tests poll the DOM instead).
    pub async fn call(&mut self, page: Option<&Page>, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(p) = page {
            message["sessionId"] = json!(p.session);
        }
        let mut bytes = serde_json::to_vec(&message).unwrap();
        bytes.push(0);
        let answer = tokio::time::timeout(CALL_TIMEOUT, async {
            self.input.write_all(&bytes).await?;
            self.input.flush().await?;
            loop {
                let mut buf = Vec::new();
                if self.output.read_until(0, &mut buf).await? == 0 {
                    return Err(std::io::Error::other("chromium closed the pipe"));
                }
                buf.pop();
                let m: Value = serde_json::from_slice(&buf).map_err(std::io::Error::other)?;
                if m["id"] == json!(id) {
                    return Ok(m);
                }
            }
        })
        .await;
        match answer {
            Ok(Ok(m)) if m.get("error").is_none() => m["result"].clone(),
            Ok(Ok(m)) => panic!("{method} failed: {}", m["error"]),
            Ok(Err(e)) => panic!("{method}: {e}; browser log:\n{}", self.log_tail()),
            Err(_) => panic!(
                "{method}: no answer within {CALL_TIMEOUT:?}; browser log:\n{}",
                self.log_tail()
            ),
        }
    }

    /// Opens `url` in a new tab.
    pub async fn open(&mut self, url: &str) -> Page {
        let target = self
            .call(None, "Target.createTarget", json!({"url": url}))
            .await;
        let attached = self
            .call(
                None,
                "Target.attachToTarget",
                json!({"targetId": target["targetId"], "flatten": true}),
            )
            .await;
        Page {
            session: attached["sessionId"]
                .as_str()
                .expect("a session id")
                .to_owned(),
        }
    }

    /// Evaluates a JavaScript expression in the page and returns its value
    /// (JSON-serialisable values only).
    pub async fn eval(&mut self, page: &Page, expression: &str) -> Value {
        let r = self
            .call(
                Some(page),
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
            )
            .await;
        if let Some(e) = r.get("exceptionDetails") {
            panic!("{expression} threw: {e}");
        }
        r["result"]["value"].clone()
    }

    /// Closes the browser and removes its profile.
    pub async fn close(mut self) {
        // Fire and forget: Chromium may close the pipe before it answers.
        self.next_id += 1;
        let mut bytes =
            serde_json::to_vec(&json!({"id": self.next_id, "method": "Browser.close"})).unwrap();
        bytes.push(0);
        let _ = self.input.write_all(&bytes).await;
        let _ = self.input.flush().await;
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
        let _ = std::fs::remove_dir_all(&self.profile);
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.profile.join("chromium.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}
