//! The `http` capability: outbound requests on a plugin's behalf.
//!
//! Every hop is checked against the [`OutboundPolicy`]: the URL's origin
//! before sending, each resolved address at connect time, and each redirect
//! target (redirects are followed here, not by the client, so none escapes
//! the policy). A hop whose origin is exactly a private grant goes through
//! a client whose resolver lets that grant's host reach internal addresses;
//! every other hop goes through one whose resolver refuses them all, so a
//! private grant never opens other ports of its host. The host owns the
//! routing and framing headers (`Host`, `Transfer-Encoding`, …): a plugin
//! that sets one is refused before anything is sent. Secret
//! templates are filled in per hop for the hop's origin; on a cross-origin
//! redirect, credential headers are dropped as browsers do. 429/503 answers
//! are retried a bounded number of times, honouring `Retry-After`. With a
//! connection's [`Budget`], every request that goes out (redirect hops and
//! retries included) first waits for a token of it. A sandbox connection's
//! [`Overrides`] send a hop whose (logical) origin is overridden to the
//! physical origin instead, after every check was made on the logical one.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use url::Url;

use std::collections::BTreeMap;

use super::budget::Budget;
use super::credential::{CredentialError, Token};
use super::overrides::Overrides;
use super::policy::{AddressScope, Origin, OutboundPolicy};
use super::redact;
use super::secrets::SecretSet;

pub use super::outbound::{HttpError, HttpSettings, Method, OutboundRequest, OutboundResponse};

/// Resolves names with the system resolver and refuses every address the
/// policy does not allow in its scope. The resolver knows the host but not
/// the port, so the scope is fixed per client: see [`OutboundHttp`].
#[derive(Debug)]
struct PolicyResolver {
    policy: Arc<OutboundPolicy>,
    scope: AddressScope,
}

/// Marker error for a refused address, found again in reqwest's error chain.
#[derive(Debug, thiserror::Error)]
#[error("{host} resolves to internal address {ip}, which is not granted")]
struct AddressRefused {
    host: String,
    ip: std::net::IpAddr,
}

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        let scope = self.scope;
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            for a in &addrs {
                if let Err(ip) = policy.check_address(scope, &host, a.ip()) {
                    return Err(Box::new(AddressRefused {
                        host: host.clone(),
                        ip,
                    }) as _);
                }
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Resolves the hosts of a connection's override targets to whatever
/// addresses they have (a sandbox on loopback), and every other host to
/// public addresses only. Only hops that an override sends to a target go
/// through the client that uses it.
#[derive(Debug)]
struct TargetResolver {
    hosts: Vec<String>,
}

impl reqwest::dns::Resolve for TargetResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        let target = self.hosts.contains(&host.to_ascii_lowercase());
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if !target && let Some(a) = addrs.iter().find(|a| !super::policy::is_public(a.ip())) {
                return Err(Box::new(AddressRefused { host, ip: a.ip() }) as _);
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Time a request needs at least once its budget lets it go: a turn later
/// than this before the call's deadline is refused rather than waited for,
/// since the request could not be answered anyway.
const MIN_REQUEST_TIME: Duration = Duration::from_millis(100);

/// An outbound HTTP client bound to one plugin's policy and secrets. Cheap
/// to clone; build one per plugin and connection, not per call.
///
/// It holds two reqwest clients, because a resolver sees a host name but
/// not the port: `public` refuses every internal address and sends every
/// hop whose origin is not exactly a private grant; `private` (built only
/// when the policy has a private grant) lets the hosts of private grants
/// resolve to internal addresses and sends only the hops whose origin
/// equals one. Each connection is made by the resolver that checked its
/// addresses, so there is no window between check and connect for DNS
/// rebinding.
#[derive(Debug, Clone)]
pub struct OutboundHttp {
    public: reqwest::Client,
    private: Option<reqwest::Client>,
    policy: Arc<OutboundPolicy>,
    secrets: Arc<SecretSet>,
    settings: HttpSettings,
    budget: Option<Arc<Budget>>,
    overrides: Arc<Overrides>,
    /// Sends the hops an override redirects (built with the overrides).
    overridden: Option<reqwest::Client>,
}

impl OutboundHttp {
    /// A client for this policy and these secrets.
    pub fn new(
        policy: OutboundPolicy,
        secrets: SecretSet,
        settings: HttpSettings,
    ) -> Result<Self, reqwest::Error> {
        let policy = Arc::new(policy);
        let client = |scope| {
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .dns_resolver(PolicyResolver {
                    policy: policy.clone(),
                    scope,
                })
                .connect_timeout(settings.timeout)
                .user_agent(concat!("nexo/", env!("CARGO_PKG_VERSION")))
                .build()
        };
        Ok(OutboundHttp {
            public: client(AddressScope::PublicOnly)?,
            private: if policy.granted().iter().any(|g| g.allow_private) {
                Some(client(AddressScope::PrivateGrant)?)
            } else {
                None
            },
            policy,
            secrets: Arc::new(secrets),
            settings,
            budget: None,
            overrides: Arc::new(Overrides::none()),
            overridden: None,
        })
    }

    /// The same client, sending every hop whose origin `overrides` names to
    /// its physical origin (which may be an internal address: the override
    /// is the admin's grant of that one target). Policy and secrets keep
    /// working on the logical origin.
    pub fn with_overrides(mut self, overrides: Overrides) -> Result<Self, reqwest::Error> {
        self.overridden = if overrides.is_empty() {
            None
        } else {
            Some(
                reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .no_proxy()
                    .dns_resolver(TargetResolver {
                        hosts: overrides.target_hosts(),
                    })
                    .connect_timeout(self.settings.timeout)
                    .user_agent(concat!("nexo/", env!("CARGO_PKG_VERSION")))
                    .build()?,
            )
        };
        self.overrides = Arc::new(overrides);
        Ok(self)
    }

    /// The connection's origin overrides (none unless a sandbox
    /// connection set some).
    pub fn overrides(&self) -> &Overrides {
        &self.overrides
    }

    /// The same client, with every request it sends (redirect hops and
    /// retries included) taking a token of `budget` first, shared with
    /// every other client of the same connection.
    pub fn with_budget(mut self, budget: Arc<Budget>) -> Self {
        self.budget = Some(budget);
        self
    }

    /// The secrets this client substitutes (for `secrets.is-set`).
    pub fn secrets(&self) -> &SecretSet {
        &self.secrets
    }

    /// Send `req`, following allowed redirects and retrying 429/503 within
    /// bounds; the deadline caps everything (the call's own time limit).
    /// With a budget, each request waits for its turn first; a turn that
    /// would come too late is answered with [`HttpError::RateLimited`].
    pub async fn send(
        &self,
        req: OutboundRequest,
        deadline: Instant,
    ) -> Result<OutboundResponse, HttpError> {
        let mut url = Url::parse(&req.url)
            .map_err(|e| HttpError::InvalidRequest(format!("bad URL `{}`: {e}", req.url)))?;
        check_plugin_headers(&req.headers)?;
        let first_origin = origin_of(&url)?;
        self.policy.check_origin(&first_origin)?;
        let mut method = req.method;
        let mut body = req.body.clone();
        let mut with_credentials = true;
        let mut redirects = 0;
        let mut retries = 0;
        // Current values of the kept-fresh secrets this request carries, and
        // whether a 401 already made them be refreshed once.
        let mut tokens: BTreeMap<String, Token> = BTreeMap::new();
        let mut refreshed_on_401 = false;
        loop {
            let origin = origin_of(&url)?;
            if with_credentials
                && self.secrets.has_fresh()
                && let Err(answer) = self
                    .fetch_tokens(&req, &origin, &mut tokens, deadline)
                    .await
            {
                return answer;
            }
            let headers = self.headers_for(&req, &origin, with_credentials, &tokens)?;
            let (client, target) = match self.overridden_hop(&origin, &url) {
                Some(hop) => hop,
                None => match (self.policy.scope_for(&origin), &self.private) {
                    (AddressScope::PrivateGrant, Some(private)) => (private, url.clone()),
                    // Without a private grant there is no private client: the
                    // stricter one is the only one.
                    _ => (&self.public, url.clone()),
                },
            };
            let mut builder = client.request(method.as_reqwest(), target).headers(headers);
            if with_credentials && let Some((user, pass)) = &req.basic_auth {
                let user = self.secrets.substitute_with(user, &origin, &tokens)?;
                let pass = self.secrets.substitute_with(pass, &origin, &tokens)?;
                builder = builder.basic_auth(user, Some(pass));
            }
            if let Some(b) = &body {
                builder = builder.body(b.clone());
            }
            // Only a request that is about to go out takes a token (one
            // refused above took none), and its timeout counts from when
            // the budget lets it go.
            if let Some(budget) = &self.budget {
                let latest = deadline.checked_sub(MIN_REQUEST_TIME).unwrap_or(deadline);
                budget.acquire(latest).await?;
            }
            let builder = builder.timeout(self.timeout_for(&req, deadline)?);
            let resp = builder.send().await.map_err(|e| self.classify(e))?;
            let status = resp.status().as_u16();

            if is_redirect(status)
                && let Some(loc) = resp.headers().get(reqwest::header::LOCATION)
            {
                redirects += 1;
                if redirects > self.settings.max_redirects {
                    return Err(HttpError::ConnectionFailed(format!(
                        "more than {} redirects",
                        self.settings.max_redirects
                    )));
                }
                let loc = loc.to_str().map_err(|_| {
                    HttpError::ConnectionFailed("redirect with a non-text Location".into())
                })?;
                let next = url.join(loc).map_err(|e| {
                    HttpError::ConnectionFailed(format!("bad redirect Location: {e}"))
                })?;
                // A sandbox naming its own (physical) address means the
                // logical origin it stands for.
                let next = self.overrides.logical(&origin, &next);
                let next_origin = origin_of(&next).map_err(|_| {
                    HttpError::RedirectNotAllowed(format!(
                        "redirect to a non-HTTP URL from {origin}"
                    ))
                })?;
                if let Err(d) = self.policy.check_origin(&next_origin) {
                    return Err(HttpError::RedirectNotAllowed(format!("from {origin}: {d}")));
                }
                if next_origin != origin {
                    with_credentials = false;
                }
                if matches!(status, 301..=303) && method != Method::Head {
                    method = Method::Get;
                    body = None;
                }
                tracing::debug!(from = %origin, to = %next_origin, status, "following redirect");
                url = next;
                continue;
            }

            // The system refused the access token it was sent: refresh it
            // (unless another request already did) and send once more.
            if status == 401 && with_credentials && !tokens.is_empty() && !refreshed_on_401 {
                refreshed_on_401 = true;
                drop(resp);
                if let Err(answer) = self.refresh_tokens(&mut tokens, deadline).await {
                    return answer;
                }
                tracing::debug!(%origin, "access token refused; sending again with a fresh one");
                continue;
            }

            if (status == 429 || status == 503) && retries < self.settings.max_retries {
                let wait =
                    retry_after(resp.headers()).unwrap_or(Duration::from_millis(500 << retries));
                let fits = Instant::now() + wait + Duration::from_millis(100) < deadline;
                if wait <= self.settings.max_retry_wait && fits {
                    retries += 1;
                    tracing::debug!(%origin, status, wait_ms = wait.as_millis() as u64, "retrying");
                    tokio::time::sleep(wait).await;
                    continue;
                }
            }

            return self.read_response(resp).await;
        }
    }

    /// The current value of each kept-fresh secret the request names for
    /// `origin` that `tokens` lacks. `Err` holds what the plugin gets
    /// instead of an answer when there is none.
    async fn fetch_tokens(
        &self,
        req: &OutboundRequest,
        origin: &Origin,
        tokens: &mut BTreeMap<String, Token>,
        deadline: Instant,
    ) -> Result<(), Result<OutboundResponse, HttpError>> {
        let texts = req.headers.iter().map(|(_, v)| v.as_str()).chain(
            req.basic_auth
                .iter()
                .flat_map(|(u, p)| [u.as_str(), p.as_str()]),
        );
        for (name, credential) in self.secrets.fresh_needed(texts, origin) {
            if tokens.contains_key(name) {
                continue;
            }
            let token = within(deadline, credential.current())
                .await?
                .map_err(|e| credential_answer(name, e))?;
            redact::register(name, &token.value);
            tokens.insert(name.to_string(), token);
        }
        Ok(())
    }

    /// After a 401: a new value for each token the request carried.
    async fn refresh_tokens(
        &self,
        tokens: &mut BTreeMap<String, Token>,
        deadline: Instant,
    ) -> Result<(), Result<OutboundResponse, HttpError>> {
        let names: Vec<String> = tokens.keys().cloned().collect();
        for name in names {
            let (Some(credential), Some(old)) =
                (self.secrets.credential(&name), tokens.remove(&name))
            else {
                continue;
            };
            let token = within(deadline, credential.rejected(old))
                .await?
                .map_err(|e| credential_answer(&name, e))?;
            redact::register(&name, &token.value);
            tokens.insert(name, token);
        }
        Ok(())
    }

    /// The client and physical URL of a hop to the logical `origin`, when
    /// an override sends it elsewhere.
    fn overridden_hop(&self, origin: &Origin, url: &Url) -> Option<(&reqwest::Client, Url)> {
        let client = self.overridden.as_ref()?;
        self.overrides.physical_origin(origin)?;
        Some((client, self.overrides.physical(url)))
    }

    fn headers_for(
        &self,
        req: &OutboundRequest,
        origin: &Origin,
        with_credentials: bool,
        tokens: &BTreeMap<String, Token>,
    ) -> Result<HeaderMap, HttpError> {
        let mut map = HeaderMap::new();
        for (name, value) in &req.headers {
            let has_secret = SecretSet::has_template(value);
            let is_credential = has_secret
                || name.eq_ignore_ascii_case("authorization")
                || name.eq_ignore_ascii_case("cookie");
            if is_credential && !with_credentials {
                continue;
            }
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| HttpError::InvalidRequest(format!("bad header name `{name}`")))?;
            let filled = if has_secret {
                self.secrets.substitute_with(value, origin, tokens)?
            } else {
                value.clone()
            };
            let mut value = HeaderValue::from_str(&filled).map_err(|_| {
                // Never echo the value: it may hold a secret.
                HttpError::InvalidRequest(format!("bad value for header `{name}`"))
            })?;
            if has_secret {
                value.set_sensitive(true);
            }
            map.append(name, value);
        }
        Ok(map)
    }

    fn timeout_for(&self, req: &OutboundRequest, deadline: Instant) -> Result<Duration, HttpError> {
        let mut t = self.settings.timeout;
        if let Some(ms) = req.timeout_ms {
            t = t.min(Duration::from_millis(u64::from(ms)));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(HttpError::Timeout);
        }
        Ok(t.min(left))
    }

    async fn read_response(
        &self,
        mut resp: reqwest::Response,
    ) -> Result<OutboundResponse, HttpError> {
        let cap = self.settings.max_response_bytes;
        if resp.content_length().is_some_and(|n| n > cap) {
            return Err(HttpError::ResponseTooLarge(cap));
        }
        // An encoded body (gzip, br…) cannot be searched for the secrets
        // the request carried; the plugin could decode it into the value.
        if let Some(encoding) = unsearchable_encoding(resp.headers())
            && (!self.secrets.redactor().is_empty() || self.secrets.has_fresh())
        {
            let encoding = self.secrets.redact(&encoding);
            return Err(HttpError::InvalidRequest(format!(
                "the system answered with `content-encoding: {encoding}`, which the host cannot \
                 check for secret values; a connector that uses secrets must not ask for \
                 compression (remove its accept-encoding header)"
            )));
        }
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect();
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| self.classify(e))? {
            if body.len() as u64 + chunk.len() as u64 > cap {
                return Err(HttpError::ResponseTooLarge(cap));
            }
            body.extend_from_slice(&chunk);
        }
        let mut response = OutboundResponse {
            status,
            headers,
            body,
        };
        // A system that echoes credentials must not hand them to the plugin.
        self.secrets.redactor().scrub_response(&mut response);
        if self.secrets.has_fresh() {
            // Kept-fresh values (every access token handed out) are known
            // to the process-wide redactor only.
            redact::current().scrub_response(&mut response);
        }
        Ok(response)
    }

    fn classify(&self, e: reqwest::Error) -> HttpError {
        if e.is_timeout() {
            return HttpError::Timeout;
        }
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(s) = source {
            if let Some(refused) = s.downcast_ref::<AddressRefused>() {
                return HttpError::AddressNotAllowed(format!(
                    "{refused} (to allow it, grant the exact origin with --grant-private-http scheme://host:port)"
                ));
            }
            source = s.source();
        }
        // reqwest's messages carry the URL, never header values.
        HttpError::ConnectionFailed(self.secrets.redact(&error_chain(&e)))
    }
}

/// `fut` unless the call's deadline comes first (a refresh waiting on
/// another process's must not outlast the call).
async fn within<T>(
    deadline: Instant,
    fut: impl std::future::Future<Output = T>,
) -> Result<T, Result<OutboundResponse, HttpError>> {
    tokio::time::timeout_at(deadline.into(), fut)
        .await
        .map_err(|_| Err(HttpError::Timeout))
}

/// What the plugin gets when a kept-fresh secret has no value: until an
/// admin authorizes the connection, a refusal of its own (nothing is sent);
/// when the token endpoint cannot be reached, a failed connection
/// (retryable).
fn credential_answer(name: &str, e: CredentialError) -> Result<OutboundResponse, HttpError> {
    Err(match e {
        CredentialError::NeedsAuthorization(why) => HttpError::NeedsAuthorization {
            secret: name.to_string(),
            why,
        },
        CredentialError::Unavailable(why) => {
            HttpError::ConnectionFailed(format!("could not get a fresh `{name}`: {why}"))
        }
    })
}

/// Statuses whose `Location` the host follows. Any other status (a 304 or
/// 300 with a `Location`, the obsolete 305 and 306) goes back to the plugin
/// as it came.
fn is_redirect(status: u16) -> bool {
    matches!(status, 301 | 302 | 303 | 307 | 308)
}

/// Headers that route or frame the request. The host sets them from the
/// URL and body; one set by the plugin could send the request (with its
/// secrets) to a virtual host or backend never granted, or smuggle a second
/// request past the origin check.
const HOST_OWNED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "expect",
    "forwarded",
    "via",
    "x-real-ip",
    "x-client-ip",
    "client-ip",
    "true-client-ip",
    "x-cluster-client-ip",
    "x-host",
    "x-original-host",
    "x-original-url",
    "x-rewrite-url",
    "http2-settings",
];

/// Prefixes of header families the host owns for the same reason.
const HOST_OWNED_PREFIXES: &[&str] = &["proxy-", "x-forwarded-"];

/// Refuse a request whose plugin-set headers include one the host owns,
/// before anything is resolved or sent.
fn check_plugin_headers(headers: &[(String, String)]) -> Result<(), HttpError> {
    for (name, _) in headers {
        let lower = name.trim().to_ascii_lowercase();
        let owned = HOST_OWNED_HEADERS.contains(&lower.as_str())
            || HOST_OWNED_PREFIXES.iter().any(|p| lower.starts_with(p));
        if owned {
            return Err(HttpError::InvalidRequest(format!(
                "header `{name}` is set by the host, not the plugin: remove it from the request \
                 (the host derives routing and framing headers from the URL and the body)"
            )));
        }
    }
    Ok(())
}

fn origin_of(url: &Url) -> Result<Origin, HttpError> {
    Origin::of(url).ok_or_else(|| {
        HttpError::InvalidRequest(format!("`{url}` is not an http(s) URL with a host"))
    })
}

/// The response's `Content-Encoding`, unless absent or `identity`.
fn unsearchable_encoding(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(reqwest::header::CONTENT_ENCODING)?;
    let v = String::from_utf8_lossy(v.as_bytes())
        .trim()
        .to_ascii_lowercase();
    (!v.is_empty() && v != "identity").then_some(v)
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// An error and its sources, joined with `: ` (reqwest's top-level message
/// alone rarely says what failed).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

impl HttpError {
    /// The same error with the values of `secrets` replaced in its text,
    /// for the plugin: messages name URLs and origins a system chose (a
    /// redirect's target), which may quote what the request carried.
    pub fn redacted(self, secrets: &SecretSet) -> HttpError {
        let r = |m: String| match secrets.redactor().scrub(&m) {
            std::borrow::Cow::Borrowed(_) => m,
            std::borrow::Cow::Owned(clean) => clean,
        };
        match self {
            HttpError::OriginNotAllowed(m) => HttpError::OriginNotAllowed(r(m)),
            HttpError::AddressNotAllowed(m) => HttpError::AddressNotAllowed(r(m)),
            HttpError::RedirectNotAllowed(m) => HttpError::RedirectNotAllowed(r(m)),
            HttpError::SecretNotAllowed(m) => HttpError::SecretNotAllowed(r(m)),
            HttpError::InvalidRequest(m) => HttpError::InvalidRequest(r(m)),
            HttpError::ConnectionFailed(m) => HttpError::ConnectionFailed(r(m)),
            HttpError::NeedsAuthorization { secret, why } => HttpError::NeedsAuthorization {
                secret,
                why: r(why),
            },
            e @ (HttpError::ResponseTooLarge(_)
            | HttpError::Timeout
            | HttpError::RateLimited(_)) => e,
        }
    }
}
