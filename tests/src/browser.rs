//! A headless Chromium driven over WebDriver (Debian's `chromium` and
//! `chromium-driver`, installed by `cargo xtask setup`), and the page
//! helpers the browser tests share: wait for an element or a text, click,
//! sign in to the console, and numbered screenshots that first check no
//! secret is in the page.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// How long any one thing may take to appear on the page.
pub const TIMEOUT: Duration = Duration::from_secs(15);

/// The first element matching `css`, once it is there.
pub async fn wait(c: &Client, css: &str) -> Element {
    c.wait()
        .at_most(TIMEOUT)
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("`{css}` did not appear within {TIMEOUT:?}: {e}"))
}

/// The text of the first element matching `css`, once it contains `needle`.
pub async fn wait_text(c: &Client, css: &str, needle: &str) -> String {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let text = wait(c, css).await.text().await.unwrap_or_default();
        if text.contains(needle) && !text.is_empty() {
            return text;
        }
        if Instant::now() > deadline {
            panic!("`{css}` shows {text:?}, not {needle:?}, after {TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Click the first element matching `css`, once it is there.
pub async fn click(c: &Client, css: &str) {
    wait(c, css)
        .await
        .click()
        .await
        .unwrap_or_else(|e| panic!("cannot click `{css}`: {e}"));
}

/// Type `token` into the sign-in form and submit it.
pub async fn login(c: &Client, token: &str) {
    let input = wait(c, "#token").await;
    input.clear().await.unwrap();
    input.send_keys(token).await.unwrap();
    click(c, "#login").await;
}

/// Numbered screenshots of the steps, kept as the test's artefacts in
/// `target/test-artifacts/<folder>/`.
#[derive(Debug)]
pub struct Screenshots {
    dir: PathBuf,
    taken: usize,
    secrets: Vec<(String, String)>,
}

impl Screenshots {
    /// Screenshots into `folder` (emptied of an earlier run's), each step
    /// first checking that none of `secrets` (what, value) is in the page.
    pub fn new(folder: &str, secrets: &[(&str, &str)]) -> Screenshots {
        let dir = artefacts(folder);
        // Old shots from an earlier run would pass for this run's.
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            if entry.path().extension().is_some_and(|e| e == "png") {
                std::fs::remove_file(entry.path()).unwrap();
            }
        }
        Screenshots {
            dir,
            taken: 0,
            secrets: secrets
                .iter()
                .map(|(what, value)| (what.to_string(), value.to_string()))
                .collect(),
        }
    }

    /// Check that no secret is in the page, then save what it shows.
    pub async fn step(&mut self, c: &Client, name: &str) {
        let html = c
            .execute("return document.documentElement.outerHTML;", vec![])
            .await
            .unwrap();
        let html = html.as_str().unwrap_or_default();
        assert!(!html.is_empty());
        for (what, secret) in &self.secrets {
            assert!(
                !html.contains(secret.as_str()),
                "the {what} is in the page at `{name}`"
            );
        }
        self.taken += 1;
        let png = c.screenshot().await.unwrap();
        let file = self.dir.join(format!("{:02}-{name}.png", self.taken));
        std::fs::write(&file, png).unwrap();
    }
}

/// `<workspace>/target/test-artifacts/<folder>`, created.
pub fn artefacts(folder: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/test-artifacts")
        .join(folder);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// chromedriver as a child process; stopped on drop, also when a step
/// panics, so no browser outlives the test.
#[derive(Debug)]
pub struct Browser {
    driver: Child,
    port: u16,
    profile: tempfile::TempDir,
}

impl Browser {
    /// Start chromedriver on a free port and wait until it answers; its log
    /// goes to `target/test-artifacts/<folder>/chromedriver.log`.
    pub async fn start(folder: &str) -> Browser {
        for bin in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(bin).exists(),
                "{bin} is missing: run `cargo xtask setup` to install chromium and chromium-driver"
            );
        }
        // The free port is only free until someone else takes it: try again.
        for _ in 0..3 {
            if let Some(browser) = Browser::try_start(folder).await {
                return browser;
            }
        }
        panic!("chromedriver did not start; see target/test-artifacts/{folder}/chromedriver.log");
    }

    async fn try_start(folder: &str) -> Option<Browser> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = std::fs::File::create(artefacts(folder).join("chromedriver.log")).unwrap();
        let mut command = Command::new(CHROMEDRIVER);
        command
            .arg(format!("--port={port}"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null());
        // Its own process group, which the browsers it starts join: killing
        // the group on drop leaves no Chromium behind after a failed step.
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let driver = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {CHROMEDRIVER}: {e}"));
        let mut browser = Browser {
            driver,
            port,
            profile: tempfile::tempdir().unwrap(),
        };
        let status = format!("http://127.0.0.1:{port}/status");
        let deadline = Instant::now() + TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(resp) = reqwest::get(&status).await
                && let Ok(body) = resp.json::<Value>().await
                && body["value"]["ready"] == true
            {
                return Some(browser);
            }
            if let Ok(Some(_)) = browser.driver.try_wait() {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }

    /// A new headless session with a fresh profile.
    pub async fn open(&self) -> Client {
        let options = json!({
            "binary": CHROMIUM,
            "args": [
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--window-size=1400,1000",
                format!("--user-data-dir={}", self.profile.path().display()),
            ],
        });
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), Value::from("chrome"));
        caps.insert("goog:chromeOptions".into(), options);
        ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .unwrap_or_else(|e| panic!("cannot open a Chromium session: {e}"))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        #[cfg(unix)]
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.driver.id())])
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
