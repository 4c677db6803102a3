//! The provider addresses templates may name (`--allowed-provider-urls`).
//!
//! Entries are compared as parsed URLs, never as text: `http://prom` does not allow
//! `http://prom.evil.example`, and `http://prom/tenant-a` does not allow
//! `http://prom/tenant-ab` or `http://prom/tenant-a/../admin`.

use reqwest::Url;

use super::MetricError;
use crate::rollout::text::one_line;

/// One allowed address.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Entry {
    /// `http(s)://host[:port][/path]`: that scheme, host and port, at or under that path.
    Prefix {
        scheme: String,
        host: String,
        port: Option<u16>,
        path: String,
    },
    /// `host:port`: http or https to that host and port, any path.
    HostPort { host: String, port: u16 },
}

const ACCEPTED: &str =
    "accepted: comma-separated http(s)://host[:port][/path] prefixes or host:port pairs";

impl Entry {
    fn parse(item: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("{item:?}: {why}; {ACCEPTED}");
        if item.contains("://") {
            let url = Url::parse(item).map_err(|e| bad(&e.to_string()))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(bad("the scheme is not http or https"));
            }
            if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
                return Err(bad(
                    "a query, fragment or user name is not part of a prefix",
                ));
            }
            let host = url.host_str().ok_or_else(|| bad("no host"))?;
            return Ok(Entry::Prefix {
                scheme: url.scheme().to_string(),
                host: host.to_string(),
                port: url.port_or_known_default(),
                path: url.path().trim_end_matches('/').to_string(),
            });
        }
        let (_, port) = item.rsplit_once(':').ok_or_else(|| bad("no port"))?;
        let port: u16 = port.parse().map_err(|_| bad("the port is not a number"))?;
        let url = Url::parse(&format!("http://{item}")).map_err(|e| bad(&e.to_string()))?;
        match url.host_str() {
            Some(host) if url.path() == "/" && url.username().is_empty() => Ok(Entry::HostPort {
                host: host.to_string(),
                port,
            }),
            _ => Err(bad("not a host:port pair")),
        }
    }

    fn matches(&self, url: &Url) -> bool {
        let host = url.host_str().unwrap_or_default();
        match self {
            Entry::HostPort { host: h, port } => {
                matches!(url.scheme(), "http" | "https")
                    && host == h
                    && url.port_or_known_default() == Some(*port)
            }
            Entry::Prefix {
                scheme,
                host: h,
                port,
                path,
            } => {
                let at = url.path().trim_end_matches('/');
                url.scheme() == scheme
                    && host == h
                    && url.port_or_known_default() == *port
                    && (at == path || at.starts_with(&format!("{path}/")))
            }
        }
    }
}

/// The addresses templates may name. Empty: any.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowedAddresses {
    entries: Vec<Entry>,
    /// As given, for messages.
    text: Vec<String>,
}

impl AllowedAddresses {
    /// From the flag's value: comma-separated prefixes and host:port pairs.
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut out = Self::default();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            out.entries.push(Entry::parse(item)?);
            out.text.push(item.to_string());
        }
        Ok(out)
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Also allow `address` (the controller's own default Prometheus).
    pub fn with(mut self, address: &str) -> Self {
        if let Ok(e) = Entry::parse(address) {
            if !self.entries.contains(&e) {
                self.entries.push(e);
                self.text.push(address.to_string());
            }
        }
        self
    }

    pub fn allows(&self, address: &str) -> bool {
        if self.entries.is_empty() {
            return true;
        }
        match Url::parse(address) {
            Ok(url) => self.entries.iter().any(|e| e.matches(&url)),
            Err(_) => false,
        }
    }

    /// A configuration error naming the address and what is allowed, unless allowed.
    pub fn check(&self, address: &str) -> Result<(), MetricError> {
        self.check_field("provider.prometheus.address", address)
    }

    /// As [`AllowedAddresses::check`], naming `field` (e.g. `provider.datadog.address`).
    pub fn check_field(&self, field: &str, address: &str) -> Result<(), MetricError> {
        if self.allows(address) {
            return Ok(());
        }
        Err(MetricError::Config(format!(
            "{field} {:?} is not among the addresses this controller lets templates name ({}); nothing was sent to it. Use one of those, or ask the cluster's operators to add it to --allowed-provider-urls",
            one_line(address, 200),
            one_line(&self.text.join(", "), 300),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_and_host_ports_match_as_parsed_urls() {
        let a = AllowedAddresses::parse(
            " http://prometheus.monitoring:9090, https://mimir.example/prometheus/ ,thanos.monitoring:10902",
        )
        .unwrap();
        for ok in [
            "http://prometheus.monitoring:9090",
            "http://Prometheus.Monitoring:9090/",
            "http://prometheus.monitoring:9090/sub/path",
            "https://mimir.example/prometheus",
            "https://mimir.example:443/prometheus/api",
            "http://thanos.monitoring:10902",
            "https://thanos.monitoring:10902/x",
        ] {
            assert!(a.allows(ok), "{ok}");
            assert_eq!(a.check(ok), Ok(()));
        }
        for bad in [
            "http://prometheus.monitoring:9091",
            "https://prometheus.monitoring:9090",
            "http://prometheus.monitoring.evil.example:9090",
            "http://prometheus.monitoring",
            "https://mimir.example/prometheusx",
            "https://mimir.example/prometheus/../admin",
            "http://mimir.example/prometheus",
            "http://thanos.monitoring:10903",
            "ftp://thanos.monitoring:10902",
            "not a url",
            "http://10.0.0.1:9090",
        ] {
            assert!(!a.allows(bad), "{bad}");
        }
        let e = a.check("http://169.254.169.254:80").unwrap_err();
        assert_eq!(e.category(), "config");
        let text = e.to_string();
        assert!(
            text.contains("\"http://169.254.169.254:80\" is not among"),
            "{text}"
        );
        assert!(text.contains("thanos.monitoring:10902"), "{text}");
        assert!(text.contains("--allowed-provider-urls"), "{text}");
    }

    #[test]
    fn empty_allows_anything_and_the_default_is_always_allowed() {
        let none = AllowedAddresses::parse(" , ").unwrap();
        assert!(none.is_empty());
        assert!(none.allows("http://anything:1"));
        let a = AllowedAddresses::parse("thanos:10902")
            .unwrap()
            .with("http://prometheus.monitoring:9090");
        assert!(a.allows("http://prometheus.monitoring:9090/"));
        assert!(!a.allows("http://prometheus.monitoring:9091/"));
    }

    #[test]
    fn bad_entries_are_refused_with_what_is_accepted() {
        for bad in [
            "thanos",
            "thanos:x",
            "ftp://x:1",
            "http://u:p@x:1",
            "http://x:1/?a=b",
            "x:1/path",
        ] {
            let e = AllowedAddresses::parse(bad).unwrap_err();
            assert!(e.contains(ACCEPTED) && e.contains(bad), "{e}");
        }
    }
}
