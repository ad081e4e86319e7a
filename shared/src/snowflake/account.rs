//! Account identifiers: the URL to call and the account name that goes into JWT claims.

use std::net::IpAddr;

use reqwest::Url;

use super::ConfigError;

/// Where a Snowflake account lives and what it is called in key-pair JWTs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Account name for JWT `iss`/`sub`: the identifier's first dot-separated part, upper-case.
    pub jwt_name: String,
    /// Base URL of the SQL API host, without a trailing slash.
    pub base_url: Url,
}

impl Account {
    /// Builds the account from the secret's `account` and optional `host` fields.
    ///
    /// Accepts `xy12345.eu-central-1`, `xy12345.us-east-1.aws`, `myorg-myaccount`, and the same
    /// with `.snowflakecomputing.com` or `https://` pasted in. `host` overrides the URL (a full
    /// URL, for PrivateLink or the local emulator); plain `http://` only to loopback addresses.
    pub fn new(identifier: &str, host: Option<&str>) -> Result<Self, ConfigError> {
        let identifier = normalize_identifier(identifier)?;
        let jwt_name = identifier
            .split('.')
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        let base_url = match host.map(str::trim).filter(|h| !h.is_empty()) {
            Some(host) => parse_host(host)?,
            None => {
                let hostname = format!(
                    "https://{}.snowflakecomputing.com",
                    identifier.to_ascii_lowercase().replace('_', "-")
                );
                Url::parse(&hostname).map_err(|e| ConfigError::invalid("account", e))?
            }
        };
        Ok(Account { jwt_name, base_url })
    }

    /// The URL of an API path such as `/api/v2/statements`.
    pub fn url(&self, path: &str) -> Url {
        let mut url = self.base_url.clone();
        url.set_path(path);
        url
    }
}

fn normalize_identifier(raw: &str) -> Result<String, ConfigError> {
    let mut id = raw.trim();
    for prefix in ["https://", "http://"] {
        if let Some(rest) = id.strip_prefix(prefix) {
            id = rest;
        }
    }
    let id = id.trim_end_matches('/');
    let id = id.strip_suffix(".snowflakecomputing.com").unwrap_or(id);
    if id.is_empty() {
        return Err(ConfigError::missing("account"));
    }
    let valid = id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if !valid || id.starts_with('.') || id.contains("..") {
        return Err(ConfigError::Invalid {
            field: "account",
            detail: format!(
                "{id:?} is not a Snowflake account identifier; expected e.g. xy12345.eu-central-1 or myorg-myaccount"
            ),
        });
    }
    Ok(id.to_string())
}

fn parse_host(host: &str) -> Result<Url, ConfigError> {
    let with_scheme = if host.contains("://") {
        host.to_string()
    } else {
        format!("https://{host}")
    };
    let url = Url::parse(&with_scheme).map_err(|e| ConfigError::invalid("host", e))?;
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&url) => {}
        "http" => {
            return Err(ConfigError::Invalid {
                field: "host",
                detail: format!(
                    "plain http is refused for {}: credentials and data must travel over TLS; use https:// (http:// is allowed only for loopback addresses such as 127.0.0.1)",
                    url.host_str().unwrap_or_default()
                ),
            });
        }
        other => {
            return Err(ConfigError::Invalid {
                field: "host",
                detail: format!("unsupported scheme {other:?}; use https://"),
            });
        }
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(ConfigError::Invalid {
            field: "host",
            detail: "no host name in the URL".into(),
        });
    }
    let mut url = url;
    url.set_path("");
    url.set_query(None);
    Ok(url)
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guide_identifier_with_region_uses_locator_for_jwt() {
        let a = Account::new("xy12345.eu-central-1", None).unwrap();
        assert_eq!(a.jwt_name, "XY12345");
        assert_eq!(
            a.base_url.as_str(),
            "https://xy12345.eu-central-1.snowflakecomputing.com/"
        );
    }

    #[test]
    fn identifier_with_cloud_suffix_keeps_it_in_host() {
        let a = Account::new("xy12345.us-east-1.aws", None).unwrap();
        assert_eq!(a.jwt_name, "XY12345");
        assert_eq!(
            a.base_url.as_str(),
            "https://xy12345.us-east-1.aws.snowflakecomputing.com/"
        );
    }

    #[test]
    fn org_account_identifier_is_upper_cased_whole() {
        let a = Account::new("myorg-myaccount", None).unwrap();
        assert_eq!(a.jwt_name, "MYORG-MYACCOUNT");
        assert_eq!(
            a.base_url.as_str(),
            "https://myorg-myaccount.snowflakecomputing.com/"
        );
    }

    #[test]
    fn pasted_url_is_reduced_to_identifier() {
        let a = Account::new("https://MyOrg-MyAccount.snowflakecomputing.com/", None).unwrap();
        assert_eq!(a.jwt_name, "MYORG-MYACCOUNT");
        assert_eq!(
            a.base_url.as_str(),
            "https://myorg-myaccount.snowflakecomputing.com/"
        );
    }

    #[test]
    fn host_override_replaces_url_but_not_jwt_name() {
        let a = Account::new(
            "xy12345.eu-central-1",
            Some("xy12345.eu-central-1.privatelink.snowflakecomputing.com"),
        )
        .unwrap();
        assert_eq!(a.jwt_name, "XY12345");
        assert_eq!(
            a.url("/api/v2/statements").as_str(),
            "https://xy12345.eu-central-1.privatelink.snowflakecomputing.com/api/v2/statements"
        );
    }

    #[test]
    fn plain_http_allowed_only_to_loopback() {
        for ok in [
            "http://127.0.0.1:8085",
            "http://localhost:8085",
            "http://[::1]:8085",
        ] {
            assert!(Account::new("localtest", Some(ok)).is_ok(), "{ok}");
        }
        for refused in [
            "http://10.0.0.5:8085",
            "http://example.com",
            "http://xy12345.snowflakecomputing.com",
        ] {
            let err = Account::new("localtest", Some(refused)).unwrap_err();
            assert!(
                err.to_string().contains("plain http is refused"),
                "{refused}: {err}"
            );
        }
    }

    #[test]
    fn rejects_identifier_with_spaces() {
        let err = Account::new("my account", None).unwrap_err();
        assert!(err.to_string().starts_with("account:"), "{err}");
    }

    #[test]
    fn empty_account_is_missing() {
        let err = Account::new("  ", None).unwrap_err();
        assert_eq!(err, ConfigError::missing("account"));
    }
}
