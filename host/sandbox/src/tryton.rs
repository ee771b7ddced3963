//! A real Tryton ERP server on 127.0.0.1, for the Tryton connector's tests
//! and for demos: `trytond` from PyPI (installed in a virtualenv by `cargo
//! xtask setup`), a fresh SQLite database per start, and a validated user
//! application key for the REST API.
//!
//! Activating Tryton's modules and setting up accounting takes ~30 s, so
//! the first start builds a **template** database once (`tryton_setup.py`:
//! company, chart of accounts, fiscal years, taxes, see that script) and
//! caches it in the virtualenv, keyed by the trytond version and the
//! script; every start copies that file. A start then takes ~2–3 s: the
//! server loads its modules on the first request.
//!
//! The key is obtained as a person would: requested through Tryton's
//! `POST /<db>/r/user/application/` route, then validated by the admin
//! (JSON-RPC `common.db.login`, then `res.user.application.validate_`).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The setup script, written next to the template it builds.
const SETUP_SCRIPT: &str = include_str!("tryton_setup.py");
/// Environment variable naming the virtualenv that holds trytond.
pub const HOME_ENV: &str = "NEXO_TRYTON_HOME";
/// Database name of every server started here.
pub const DATABASE: &str = "nexo";
/// How long a start waits for the server to answer.
const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// Why Tryton could not be started.
#[derive(Debug, thiserror::Error)]
pub enum TrytonError {
    /// No virtualenv with trytond was found.
    #[error(
        "trytond is not installed (looked for bin/trytond in {looked}); run `cargo xtask setup`, \
         or point {HOME_ENV} at a virtualenv with trytond 8 and its modules"
    )]
    NotInstalled {
        /// The places looked at.
        looked: String,
    },
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Building the template database failed.
    #[error("building the Tryton template database failed ({status}); its output is in {log}")]
    Setup {
        /// Exit status of the script.
        status: String,
        /// Log file.
        log: PathBuf,
    },
    /// The server did not answer in time, or exited.
    #[error("trytond did not become ready on {url} ({reason}); its log is {log}")]
    NotReady {
        /// Server URL.
        url: String,
        /// What was seen.
        reason: String,
        /// Log file.
        log: PathBuf,
    },
    /// The server answered a setup request unexpectedly.
    #[error("Tryton answered {what} unexpectedly: {detail}")]
    Api {
        /// The request.
        what: &'static str,
        /// The answer (never a key or password).
        detail: String,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> TrytonError {
    let what = what.into();
    move |source| TrytonError::Io { what, source }
}

/// Ids in the template database that a connector config needs.
#[derive(Debug, Clone, Deserialize)]
pub struct TemplateIds {
    /// `company.company` id.
    pub company: u64,
    /// Company currency id (EUR).
    pub currency: u64,
    /// Receivable account id.
    pub receivable_account: u64,
    /// Revenue account id.
    pub revenue_account: u64,
    /// Product account category id (revenue account, 20 % tax).
    pub account_category: u64,
    /// Payment term id ("Direct").
    pub payment_term: u64,
}

/// A running trytond with a fresh database; killed on drop.
#[derive(Debug)]
pub struct Tryton {
    url: String,
    application_key: String,
    ids: TemplateIds,
    version: String,
    child: Child,
    dir: PathBuf,
    /// The one client of every setup and seeding request.
    http: reqwest::Client,
}

impl Tryton {
    /// The virtualenv holding trytond: `$NEXO_TRYTON_HOME`, else
    /// `target/tryton` of the workspace (found from the current directory
    /// upwards, then from where this crate was built); `None` if none has
    /// `bin/trytond`.
    pub fn find() -> Option<PathBuf> {
        Self::candidates()
            .into_iter()
            .find(|home| home.join("bin").join("trytond").is_file())
    }

    /// Where [`Tryton::find`] looks, in order.
    pub fn candidates() -> Vec<PathBuf> {
        if let Some(home) = std::env::var_os(HOME_ENV) {
            return vec![PathBuf::from(home)];
        }
        let mut out = Vec::new();
        if let Ok(cwd) = std::env::current_dir() {
            for dir in cwd.ancestors() {
                if dir.join("Cargo.toml").is_file() && dir.join("target").is_dir() {
                    out.push(dir.join("target").join("tryton"));
                }
            }
        }
        let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/tryton");
        out.push(built);
        out
    }

    /// Starts trytond on a free port of 127.0.0.1 with a fresh copy of the
    /// template database under `work_dir` (which must outlive the server).
    pub async fn start(work_dir: &Path) -> Result<Tryton, TrytonError> {
        let home = Self::find().ok_or_else(|| TrytonError::NotInstalled {
            looked: Self::candidates()
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })?;
        let work = work_dir.to_path_buf();
        let (mut server, password) = tokio::task::spawn_blocking(move || Self::spawn(&home, &work))
            .await
            .map_err(|e| TrytonError::Io {
                what: "starting trytond".into(),
                source: std::io::Error::other(e.to_string()),
            })??;
        server.application_key = server.new_key(&password).await?;
        tracing::info!(url = %server.url, version = %server.version, "trytond ready");
        Ok(server)
    }

    /// Copies the template and spawns trytond (blocking work).
    fn spawn(home: &Path, work_dir: &Path) -> Result<(Tryton, String), TrytonError> {
        let template = template::ensure(home)?;
        let db_dir = work_dir.join("tryton-db");
        std::fs::create_dir_all(&db_dir).map_err(io(format!("creating {}", db_dir.display())))?;
        let db_file = db_dir.join(format!("{DATABASE}.sqlite"));
        std::fs::copy(template.dir.join(format!("{DATABASE}.sqlite")), &db_file)
            .map_err(io(format!("copying the template to {}", db_file.display())))?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(io("finding a free port"))?
            .port();
        let log = work_dir.join("trytond.log");
        let out = std::fs::File::create(&log).map_err(io(format!("creating {}", log.display())))?;
        let err = out.try_clone().map_err(io("opening the log"))?;
        // Before the child: an error here must not leave a server behind.
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| TrytonError::Api {
                what: "client",
                detail: e.to_string(),
            })?;
        let child = Command::new(home.join("bin").join("trytond"))
            .env_remove("TRYTOND_CONFIG")
            .env("TRYTOND_DATABASE__URI", "sqlite://")
            .env("TRYTOND_DATABASE__PATH", &db_dir)
            .env("TRYTOND_WEB__LISTEN", format!("127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(io("running trytond"))?;
        let server = Tryton {
            http,
            url: format!("http://127.0.0.1:{port}"),
            application_key: String::new(),
            ids: template.ids,
            version: template.version,
            child,
            dir: work_dir.to_path_buf(),
        };
        Ok((server, template.password))
    }

    /// Requests a key for the REST API and validates it as the admin.
    async fn new_key(&mut self, password: &str) -> Result<String, TrytonError> {
        let log = self.log();
        let http = self.http.clone();
        let db = format!("{}/{DATABASE}", self.url);
        let started = Instant::now();
        // The first request also waits for the server to load its modules.
        let key: String = loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(TrytonError::NotReady {
                    url: self.url.clone(),
                    reason: format!("trytond exited with {status}"),
                    log: log.clone(),
                });
            }
            let sent = http
                .post(format!("{db}/r/user/application/"))
                .json(&json!({"user": "admin", "application": "rest"}))
                .send()
                .await;
            match sent {
                Ok(r) if r.status().is_success() => {
                    break r.json().await.map_err(|e| TrytonError::Api {
                        what: "the key request",
                        detail: e.to_string(),
                    })?;
                }
                Ok(r) => {
                    return Err(TrytonError::Api {
                        what: "the key request",
                        detail: format!("HTTP {}", r.status()),
                    });
                }
                Err(e) if started.elapsed() > READY_TIMEOUT => {
                    return Err(TrytonError::NotReady {
                        url: self.url.clone(),
                        reason: format!("no answer after {READY_TIMEOUT:?}: {e}"),
                        log: log.clone(),
                    });
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        let rpc_url = format!("{db}/rpc/");
        let login = rpc(
            &http,
            &rpc_url,
            None,
            "common.db.login",
            json!(["admin", {"password": password}, "en"]),
        )
        .await?;
        let (uid, session) = match (
            login.get(0).and_then(Value::as_u64),
            login.get(1).and_then(Value::as_str),
        ) {
            (Some(u), Some(s)) => (u, s.to_string()),
            _ => {
                return Err(TrytonError::Api {
                    what: "the admin login",
                    detail: "no user id and session in the answer".into(),
                });
            }
        };
        let auth =
            base64::engine::general_purpose::STANDARD.encode(format!("admin:{uid}:{session}"));
        let found = rpc(
            &http,
            &rpc_url,
            Some(&auth),
            "model.res.user.application.search",
            json!([
                [["key", "=", key], ["state", "=", "requested"]],
                0,
                1,
                null,
                {}
            ]),
        )
        .await?;
        let ids = found.as_array().cloned().unwrap_or_default();
        if ids.len() != 1 {
            return Err(TrytonError::Api {
                what: "the key search",
                detail: format!("{} requested keys match", ids.len()),
            });
        }
        rpc(
            &http,
            &rpc_url,
            Some(&auth),
            "model.res.user.application.validate_",
            json!([ids, {}]),
        )
        .await?;
        Ok(key)
    }

    /// Base URL with the database, as the connector's `base_url`.
    pub fn base_url(&self) -> String {
        format!("{}/{DATABASE}", self.url)
    }

    /// The server's origin (`http://127.0.0.1:PORT`), for grants.
    pub fn origin(&self) -> &str {
        &self.url
    }

    /// The validated user application key (the connector's secret
    /// `application_key`).
    pub fn application_key(&self) -> &str {
        &self.application_key
    }

    /// Ids of the template's company, accounts and so on.
    pub fn ids(&self) -> &TemplateIds {
        &self.ids
    }

    /// The trytond version running.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// A connector config for this server.
    pub fn connector_config(&self, page_size: u32) -> Value {
        json!({"base_url": self.base_url(), "page_size": page_size, "company": self.ids.company,
               "account_category": self.ids.account_category, "payment_term": self.ids.payment_term})
    }

    /// The server's log file.
    pub fn log(&self) -> PathBuf {
        self.dir.join("trytond.log")
    }

    /// Creates a `model` record through the REST API, as a person working
    /// in Tryton would (Tryton's JSON: decimals as
    /// `{"__class__": "Decimal", "decimal": "9.50"}`); its id.
    pub async fn create(&self, model: &str, values: &Value) -> Result<u64, TrytonError> {
        let context = base64::engine::general_purpose::URL_SAFE
            .encode(json!({"company": self.ids.company}).to_string());
        let answer = self
            .http
            .post(format!("{}/rest/model/{model}?f=id", self.base_url()))
            .bearer_auth(&self.application_key)
            .header("X-Tryton-Context", context)
            .json(values)
            .send()
            .await
            .map_err(|e| TrytonError::Api {
                what: "a record create",
                detail: format!("{model}: {e}"),
            })?;
        let status = answer.status();
        let body: Value = answer.json().await.unwrap_or(Value::Null);
        match body.get("id").and_then(Value::as_u64) {
            Some(id) if status.is_success() => Ok(id),
            _ => Err(TrytonError::Api {
                what: "a record create",
                detail: format!("{model}: HTTP {status} {body}"),
            }),
        }
    }

    /// Creates `count` salable service products (templates with one
    /// variant, codes `SRV-001`…, in the template's revenue category with
    /// its 20 % tax), as a demo catalogue; their codes.
    pub async fn seed_products(&self, count: usize) -> Result<Vec<String>, TrytonError> {
        const NAMES: [&str; 6] = [
            "Consulting hour",
            "Onboarding workshop",
            "Support plan (month)",
            "Data migration",
            "Training day",
            "Integration audit",
        ];
        let mut codes = Vec::with_capacity(count);
        for i in 0..count {
            let code = format!("SRV-{:03}", i + 1);
            let name = match NAMES.get(i) {
                Some(n) => (*n).to_string(),
                None => format!("Service {}", i + 1),
            };
            let price = format!("{}.{:02}", 40 + 15 * i, (i * 25) % 100);
            self.create(
                "product.template",
                &json!({"name": name, "code": code, "type": "service", "salable": true,
                    "list_price": {"__class__": "Decimal", "decimal": price},
                    "default_uom": 1, "sale_uom": 1,
                    "account_category": self.ids.account_category,
                    "products": [["create", [{}]]]}),
            )
            .await?;
            codes.push(code);
        }
        Ok(codes)
    }
}

/// One JSON-RPC call (`Session` credentials when given); its `result`.
async fn rpc(
    http: &reqwest::Client,
    url: &str,
    auth: Option<&str>,
    method: &str,
    params: Value,
) -> Result<Value, TrytonError> {
    let mut req = http
        .post(url)
        .json(&json!({"id": 1, "method": method, "params": params}));
    if let Some(a) = auth {
        req = req.header("Authorization", format!("Session {a}"));
    }
    let failed = |e: reqwest::Error| TrytonError::Api {
        what: "a JSON-RPC call",
        detail: format!("{method}: {e}"),
    };
    let body: Value = req
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(failed)?
        .json()
        .await
        .map_err(failed)?;
    match body.get("result") {
        Some(result) => Ok(result.clone()),
        None => Err(TrytonError::Api {
            what: "a JSON-RPC call",
            detail: format!("{method}: {}", body.get("error").unwrap_or(&body)),
        }),
    }
}

impl Drop for Tryton {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

mod template {
    //! The cached template database: built once per trytond version and
    //! setup script, under a file lock so parallel starts build it once.

    use super::*;

    pub(super) struct Template {
        pub dir: PathBuf,
        pub ids: TemplateIds,
        pub password: String,
        pub version: String,
    }

    fn version(home: &Path) -> Result<String, TrytonError> {
        let out = Command::new(home.join("bin").join("python"))
            .args(["-c", "import trytond; print(trytond.__version__)"])
            .output()
            .map_err(io("asking the virtualenv's python for the trytond version"))?;
        if !out.status.success() {
            return Err(TrytonError::NotInstalled {
                looked: format!("{} (python cannot import trytond)", home.display()),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    pub(super) fn ensure(home: &Path) -> Result<Template, TrytonError> {
        let version = version(home)?;
        let script_hash = hex::encode(&Sha256::digest(SETUP_SCRIPT.as_bytes())[..6]);
        let root = home.join("nexo-templates");
        let dir = root.join(format!("trytond-{version}-{script_hash}"));
        std::fs::create_dir_all(&root).map_err(io(format!("creating {}", root.display())))?;
        let lock_path = root.join("build.lock");
        let lock = std::fs::File::create(&lock_path)
            .map_err(io(format!("creating {}", lock_path.display())))?;
        lock.lock().map_err(io("locking the template folder"))?;
        let ids_file = dir.join("ids.json");
        if !ids_file.is_file() {
            build(home, &dir, &version)?;
        }
        let read = |p: PathBuf| {
            std::fs::read_to_string(&p).map_err(io(format!("reading {}", p.display())))
        };
        let ids: TemplateIds =
            serde_json::from_str(&read(ids_file)?).map_err(|e| TrytonError::Api {
                what: "the template's ids.json",
                detail: e.to_string(),
            })?;
        let password = read(dir.join("admin.pass"))?.trim().to_string();
        drop(lock);
        Ok(Template {
            dir,
            ids,
            password,
            version,
        })
    }

    fn build(home: &Path, dir: &Path, version: &str) -> Result<(), TrytonError> {
        let started = Instant::now();
        tracing::info!(
            version,
            "building the Tryton template database (once, ~30 s)"
        );
        let tmp = dir.with_extension("building");
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(io(format!("creating {}", tmp.display())))?;
        let mut secret = [0u8; 16];
        getrandom::fill(&mut secret)
            .map_err(|e| io("generating a password")(std::io::Error::other(e.to_string())))?;
        let pass = tmp.join("admin.pass");
        std::fs::write(&pass, hex::encode(secret)).map_err(io("writing the admin password"))?;
        let script = tmp.join("tryton_setup.py");
        std::fs::write(&script, SETUP_SCRIPT).map_err(io("writing tryton_setup.py"))?;
        let log = tmp.join("setup.log");
        let out = std::fs::File::create(&log).map_err(io(format!("creating {}", log.display())))?;
        let err = out.try_clone().map_err(io("opening the log"))?;
        let status = Command::new(home.join("bin").join("python"))
            .arg(&script)
            .args(["--database", DATABASE, "--password-file"])
            .arg(&pass)
            .arg("--out")
            .arg(tmp.join("ids.json"))
            .env_remove("TRYTOND_CONFIG")
            .env("TRYTOND_DATABASE__URI", "sqlite://")
            .env("TRYTOND_DATABASE__PATH", &tmp)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .status()
            .map_err(io("running tryton_setup.py"))?;
        if !status.success() {
            return Err(TrytonError::Setup {
                status: status.to_string(),
                log,
            });
        }
        let _ = std::fs::remove_dir_all(dir);
        std::fs::rename(&tmp, dir)
            .map_err(io(format!("moving the template to {}", dir.display())))?;
        tracing::info!(
            secs = started.elapsed().as_secs_f64(),
            "Tryton template database built"
        );
        Ok(())
    }
}
