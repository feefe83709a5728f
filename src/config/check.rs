//! Checking a configuration before anything starts: every field's range, names, URLs and the
//! `${VAR}`s read from the environment, each error naming the field at fault.

use super::{Config, ConfigError, invalid};

/// One provider after checking: its unique name and its URLs with `${VAR}`s expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedProvider {
    pub name: String,
    pub url: String,
    pub ws_url: Option<String>,
}

/// `url` must be one of `schemes` (lowercase, with `://`) and name a host.
fn check_url(url: &str, field: &str, schemes: &[&str]) -> Result<(), ConfigError> {
    let lower = url.to_ascii_lowercase();
    if !schemes.iter().any(|s| lower.starts_with(s)) {
        return Err(invalid(field, format!("must start with {}", schemes.join(" or "))));
    }
    if crate::provider::SecretUrl::new(url).host().is_empty() {
        return Err(invalid(field, "has no host"));
    }
    Ok(())
}

impl Config {
    /// Check every field; expand `${VAR}` in URLs using `env`. Returns each provider's name and URLs.
    pub fn resolve(&self, env: impl Fn(&str) -> Option<String>) -> Result<Vec<ResolvedProvider>, ConfigError> {
        if self.providers.is_empty() {
            return Err(invalid("providers", "no provider configured: pass --rpc URL or a [[providers]] entry"));
        }
        if self.max_reorg_depth == 0 {
            return Err(invalid("max_reorg_depth", "must be at least 1"));
        }
        if self.retention.raw_days == 0 {
            return Err(invalid("retention.raw_days", "must be at least 1"));
        }
        if self.retention.rollup_days < self.retention.raw_days {
            return Err(invalid("retention.rollup_days", "must be at least retention.raw_days"));
        }
        if self.poll_interval_ms < 10 {
            return Err(invalid("poll_interval_ms", "must be at least 10"));
        }
        if self.batch_size == 0 || self.batch_size > 1000 {
            return Err(invalid("batch_size", "must be between 1 and 1000"));
        }
        if self.concurrency == 0 || self.concurrency > 256 {
            return Err(invalid("concurrency", "must be between 1 and 256"));
        }
        let r = &self.routing;
        if !(r.breaker_error_rate > 0.0 && r.breaker_error_rate <= 1.0) {
            return Err(invalid("routing.breaker_error_rate", "must be within (0, 1]"));
        }
        if r.breaker_failures == 0 {
            return Err(invalid("routing.breaker_failures", "must be at least 1"));
        }
        if r.window_secs == 0 || r.request_deadline_ms == 0 {
            return Err(invalid("routing.window_secs/request_deadline_ms", "must be positive"));
        }
        self.check_api()?;
        self.rpc.check()?;
        if let Some(n) = &self.sink.nats {
            n.check()?;
            if !self.index.raw_json {
                return Err(invalid("sink.nats", "needs [index] raw_json = true: messages carry the node's JSON"));
            }
            if n.kinds.contains(&super::SinkKind::Events) && self.index.contracts.is_empty() {
                return Err(invalid("sink.nats.kinds", "\"events\" needs [[index.contracts]] to decode them"));
            }
        }
        self.check_heads()?;
        let mut out: Vec<ResolvedProvider> = Vec::new();
        for (i, p) in self.providers.iter().enumerate() {
            let field = format!("providers[{i}].url");
            let url = interpolate(&p.url, &field, &env)?;
            check_url(&url, &field, &["http://", "https://", "ws://", "wss://"])?;
            let host = crate::provider::SecretUrl::new(url.clone()).host();
            let ws_field = format!("providers[{i}].ws_url");
            let ws_url = p.ws_url.as_ref().map(|w| interpolate(w, &ws_field, &env)).transpose()?;
            if let Some(w) = &ws_url {
                check_url(w, &ws_field, &["ws://", "wss://"])?;
            }
            if p.poll_interval_ms.is_some_and(|ms| ms < 10) {
                return Err(invalid(format!("providers[{i}].poll_interval_ms"), "must be at least 10"));
            }
            if let Some(ms) = p.timeout_ms
                && ms == 0
            {
                return Err(invalid(format!("providers[{i}].timeout_ms"), "must be positive"));
            }
            if let Some(r) = p.max_rps
                && !(r > 0.0 && r.is_finite())
            {
                return Err(invalid(format!("providers[{i}].max_rps"), "must be a positive number"));
            }
            if let Some(w) = p.weight
                && !(w > 0.0 && w.is_finite())
            {
                return Err(invalid(format!("providers[{i}].weight"), "must be a positive number"));
            }
            if let Some(x) = p.price_per_million_credits
                && !(x >= 0.0 && x.is_finite())
            {
                return Err(invalid(format!("providers[{i}].price_per_million_credits"), "must be 0 or more"));
            }
            if p.max_concurrency == Some(0) || p.burst == Some(0) {
                return Err(invalid(format!("providers[{i}].max_concurrency/burst"), "must be at least 1"));
            }
            let base = match &p.name {
                Some(n) if n.trim().is_empty() => {
                    return Err(invalid(format!("providers[{i}].name"), "must not be empty"));
                }
                Some(n) => n.clone(),
                None => host,
            };
            let mut name = base.clone();
            let mut k = 2;
            while out.iter().any(|r| r.name == name) {
                if p.name.is_some() {
                    return Err(invalid(format!("providers[{i}].name"), format!("duplicate name {base:?}")));
                }
                name = format!("{base}-{k}");
                k += 1;
            }
            out.push(ResolvedProvider { name, url, ws_url });
        }
        self.check_chain_ids()?;
        Ok(out)
    }

    fn check_heads(&self) -> Result<(), ConfigError> {
        let h = &self.heads;
        if h.standby_poll_interval_ms < 10 {
            return Err(invalid("heads.standby_poll_interval_ms", "must be at least 10"));
        }
        if !(0.0..=0.95).contains(&h.quiet_fraction) {
            return Err(invalid("heads.quiet_fraction", "must be within [0, 0.95]"));
        }
        if h.silent_blocks == 0 {
            return Err(invalid("heads.silent_blocks", "must be at least 1"));
        }
        Ok(())
    }

    /// A fleet follows one chain: every `providers[].chain_id` that is set must agree with the
    /// others and with `chain_id`.
    fn check_chain_ids(&self) -> Result<(), ConfigError> {
        let mut expected = self.chain_id.map(|c| (c, "chain_id".to_string()));
        for (i, p) in self.providers.iter().enumerate() {
            let Some(c) = p.chain_id else { continue };
            match &expected {
                Some((e, from)) if *e != c => {
                    return Err(invalid(
                        format!("providers[{i}].chain_id"),
                        format!("is {c} but {from} is {e}: a fleet follows one chain"),
                    ));
                }
                Some(_) => {}
                None => expected = Some((c, format!("providers[{i}].chain_id"))),
            }
        }
        Ok(())
    }

    /// The chain the configuration names: `chain_id`, else a provider's `chain_id` (they agree,
    /// checked by `resolve`). None: the providers' majority decides.
    pub fn expected_chain_id(&self) -> Option<u64> {
        self.chain_id.or_else(|| self.providers.iter().find_map(|p| p.chain_id))
    }
}

impl Config {
    fn check_api(&self) -> Result<(), ConfigError> {
        let a = &self.api;
        if !(a.rate_limit_rps > 0.0 && a.rate_limit_rps.is_finite()) || a.rate_limit_burst == 0 {
            return Err(invalid("api.rate_limit_rps/rate_limit_burst", "must be positive"));
        }
        if a.max_body_bytes == 0
            || a.max_connections == 0
            || a.max_connections_per_ip == 0
            || a.sql_concurrency == 0
            || a.sql_max_rows == 0
        {
            return Err(invalid("api.max_body_bytes/max_connections/sql_*", "must be positive"));
        }
        if a.sql_timeout_ms == 0 || a.request_timeout_ms == 0 || a.header_read_timeout_ms == 0 {
            return Err(invalid("api.*_timeout_ms", "must be positive"));
        }
        let al = &self.alerts;
        if al.interval_ms < 10 || al.window_secs == 0 {
            return Err(invalid("alerts.interval_ms/window_secs", "must be positive (interval at least 10 ms)"));
        }
        if !((0.0..=1.0).contains(&al.error_rate) && al.credits_fraction > 0.0 && al.credits_fraction.is_finite()) {
            return Err(invalid(
                "alerts.error_rate/credits_fraction",
                "error_rate within [0, 1], credits_fraction > 0",
            ));
        }
        Ok(())
    }

    /// `[api] listen` as an address.
    pub fn api_listen(&self) -> Result<std::net::SocketAddr, ConfigError> {
        self.api.listen.parse().map_err(|e| invalid("api.listen", format!("{e}")))
    }

    /// The API key with `${VAR}` expanded and surrounding whitespace removed (None when unset,
    /// empty or only whitespace: such a key protects nothing, so it allows no public bind).
    pub fn api_key(&self, env: impl Fn(&str) -> Option<String>) -> Result<Option<String>, ConfigError> {
        match &self.api.api_key {
            None => Ok(None),
            Some(k) => {
                let k = interpolate(k, "api.api_key", &env)?;
                let k = k.trim();
                Ok((!k.is_empty()).then(|| k.to_string()))
            }
        }
    }

    /// Everything that comes from the environment (provider URLs, the API key, the webhook
    /// URL), checked at once, so a bad value is refused before any file is touched.
    pub fn check_env(&self, env: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        self.resolve(&env)?;
        self.api_key(&env)?;
        self.rpc.resolve_keys(&env)?;
        if let Some(n) = &self.sink.nats {
            n.secrets(&env)?;
        }
        self.webhook_url(&env)?;
        Ok(())
    }

    /// The configuration as JSON with every secret hidden: provider URLs keep only scheme and
    /// host, the API key and webhook URL are replaced by whether they are set.
    pub fn redacted(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        if let Some(ps) = v.get_mut("providers").and_then(|p| p.as_array_mut()) {
            for (p, c) in ps.iter_mut().zip(&self.providers) {
                p["url"] = crate::provider::SecretUrl::new(c.url.clone()).redacted().into();
                if let Some(w) = &c.ws_url {
                    p["ws_url"] = crate::provider::SecretUrl::new(w.clone()).redacted().into();
                }
            }
        }
        if let Some(api) = v.get_mut("api") {
            api["api_key"] = serde_json::Value::from(self.api.api_key.is_some().then_some("(set)"));
        }
        if let Some(keys) = v.get_mut("rpc").and_then(|r| r.get_mut("keys")).and_then(|k| k.as_array_mut()) {
            for k in keys {
                k["key"] = "(set)".into();
            }
        }
        if let Some(n) = v.get_mut("sink").and_then(|s| s.get_mut("nats")).filter(|n| n.is_object()) {
            for k in ["token", "password"] {
                if !n[k].is_null() {
                    n[k] = "(set)".into();
                }
            }
        }
        if let Some(al) = v.get_mut("alerts") {
            al["webhook_url"] = serde_json::Value::from(self.alerts.webhook_url.is_some().then_some("(set)"));
        }
        v
    }

    /// The alert webhook URL with `${VAR}` expanded.
    pub fn webhook_url(&self, env: impl Fn(&str) -> Option<String>) -> Result<Option<String>, ConfigError> {
        self.alerts.webhook_url.as_deref().map(|u| interpolate(u, "alerts.webhook_url", &env)).transpose()
    }
}

/// Expand `${VAR}` from `env`. A missing variable is an error naming the field.
pub(super) fn interpolate(s: &str, field: &str, env: &impl Fn(&str) -> Option<String>) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or_else(|| invalid(field, "unterminated ${ in URL"))?;
        let var = &after[..end];
        if var.is_empty() {
            return Err(invalid(field, "empty ${} in URL"));
        }
        let v = env(var).ok_or_else(|| ConfigError::MissingEnv { field: field.into(), var: var.into() })?;
        out.push_str(&v);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(k: &str) -> Option<String> {
        (k == "KEY").then(|| "s3cret".to_string())
    }

    #[test]
    fn interpolates_and_names_providers() {
        let mut c =
            Config::from_toml("[[providers]]\nname = \"alchemy\"\nurl = \"https://x.io/v2/${KEY}\"\n", "t.toml")
                .unwrap_or_default();
        c.add_rpc_urls(&["http://127.0.0.1:1".into(), "http://127.0.0.1:1".into()]);
        let r = c.resolve(env).unwrap_or_default();
        assert_eq!(r[0].name, "alchemy");
        assert_eq!(r[0].url, "https://x.io/v2/s3cret");
        assert_eq!(r[1].name, "127.0.0.1:1");
        assert_eq!(r[2].name, "127.0.0.1:1-2");
        let c = Config::from_toml(
            "[[providers]]\nurl = \"http://127.0.0.1:1\"\nws_url = \"ws://127.0.0.1:1/${KEY}\"\n[[providers]]\nurl = \"wss://x.io\"\n",
            "t.toml",
        )
        .unwrap_or_default();
        let r = c.resolve(env).unwrap_or_default();
        assert_eq!(r.iter().map(|p| p.ws_url.as_deref()).collect::<Vec<_>>(), [Some("ws://127.0.0.1:1/s3cret"), None]);
        let c =
            Config::from_toml("[[providers]]\nurl = \"http://127.0.0.1:1\"\nws_url = \"http://127.0.0.1:2\"\n", "t")
                .unwrap_or_default();
        let e = c.resolve(env).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("providers[0].ws_url") && e.contains("ws://"), "{e}");
    }

    #[test]
    fn an_empty_file_is_the_defaults() {
        let c = Config::from_toml("", "c.toml").unwrap_or_else(|_| Config { max_reorg_depth: 0, ..Config::default() });
        assert_eq!(c.max_reorg_depth, 64);
        assert_eq!((c.batch_size, c.concurrency, c.retention.raw_days), (20, 6, 7));
        assert!(c.full_transactions && c.verify_header_hash && c.telemetry);
    }

    #[test]
    fn errors_name_the_field() {
        let e = Config::from_toml("max_reorg_dept = 3", "c.toml").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("max_reorg_dept"), "{e}");
        let e = Config::from_toml("[[providers]]\nurl = 5", "c.toml").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("url"), "{e}");
        let mut c = Config::default();
        c.add_rpc_urls(&["https://x.io/${NOPE}".into()]);
        let e = c.resolve(env).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("providers[0].url") && e.contains("NOPE"), "{e}");
        let mut c = Config::default();
        c.add_rpc_urls(&["ftp://x".into()]);
        assert!(c.resolve(env).is_err());
        let mut c = Config::default();
        c.add_rpc_urls(&["http://a".into(), "http://b".into()]);
        c.providers[0].chain_id = Some(1);
        assert_eq!(c.expected_chain_id(), Some(1));
        c.providers[1].chain_id = Some(5);
        let e = c.resolve(env).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("providers[1].chain_id") && e.contains("one chain"), "{e}");
        assert!(Config::default().resolve(env).is_err());
    }
}
