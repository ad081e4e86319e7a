//! Account identifiers: the URL to call and the account name that goes into JWT claims.

use std::net::IpAddr;

use reqwest::Url;

/// Why an account identifier or host cannot be used; the caller names its setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    /// No account identifier was given.
    #[error("no account identifier")]
    Missing,
    /// The account identifier is unusable: what is wrong and what to write.
    #[error("{0}")]
    Identifier(String),
    /// The host is unusable: what is wrong and what to write.
    #[error("{0}")]
    Host(String),
}

/// Where a Snowflake account lives and what it is called in key-pair JWTs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Account name for JWT `iss`/`sub`, upper-case (see [`Account::new`]).
    pub jwt_name: String,
    /// Base URL of the SQL API host, without a trailing slash.
    pub base_url: Url,
}

impl Account {
    /// Builds the account from the secret's `account` and optional `host` fields.
    ///
    /// Accepts `xy12345.eu-central-1`, `xy12345.us-east-1.aws`, `myorg-myaccount`, the global
    /// form `xy12345-group.global`, China regions (`xy12345.cn-north-1`), and the same with
    /// `.snowflakecomputing.com` / `.cn` or `https://` pasted in. Refuses the `ORG.ACCOUNT` form
    /// SQL uses, naming the form to write. `host` overrides the URL (a full URL, for PrivateLink
    /// or the local emulator); plain `http://` only to loopback addresses.
    ///
    /// The JWT's account name follows the official connectors: the part before the first `.`
    /// (gosnowflake `internal/config/dsn.go` `ExtractAccountName`; snowflake-connector-python
    /// `auth/keypair.py` `prepare`), and for `.global` identifiers the part before the `-`
    /// (keypair.py: `account.partition("-")[0]`; gosnowflake `FillMissingConfigParameters`
    /// cuts at the last `-` when the host has `.global.`). An account name with `_` keeps it in
    /// the JWT (`myorg-my_account` → `MYORG-MY_ACCOUNT`; neither connector rewrites it) while
    /// the host takes `-` (`myorg-my-account.snowflakecomputing.com`, Snowflake's URL form).
    pub fn new(identifier: &str, host: Option<&str>) -> Result<Self, AccountError> {
        let (identifier, pasted_china) = normalize_identifier(identifier)?;
        let jwt_name = jwt_account_name(&identifier)?;
        let base_url = match host.map(str::trim).filter(|h| !h.is_empty()) {
            Some(host) => parse_host(host)?,
            None => {
                // China regions live under .cn (snowflake-connector-python `util_text.py`
                // `construct_hostname`; gosnowflake `dsn.go` `getDomainBasedOnRegion`).
                let china = pasted_china
                    || identifier
                        .split('.')
                        .nth(1)
                        .is_some_and(|region| region.to_ascii_lowercase().starts_with("cn-"));
                let hostname = format!(
                    "https://{}.snowflakecomputing.{}",
                    identifier.to_ascii_lowercase().replace('_', "-"),
                    if china { "cn" } else { "com" }
                );
                Url::parse(&hostname).map_err(|e| AccountError::Identifier(e.to_string()))?
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

/// The account name that goes into the JWT's `iss` and `sub`, upper-case.
fn jwt_account_name(identifier: &str) -> Result<String, AccountError> {
    let lower = identifier.to_ascii_lowercase();
    if let Some(name) = lower.strip_suffix(".global") {
        let parts: Vec<&str> = name.split('-').collect();
        if parts.len() != 2 || parts.iter().any(|p| p.is_empty() || p.contains('.')) {
            return Err(AccountError::Identifier(format!(
                "{identifier:?} is a global URL identifier that is not <account locator>-<connection group>.global, and the official connectors disagree on its JWT account name; write the account locator alone (e.g. xy12345) as account and the full URL (https://{lower}.snowflakecomputing.com) as host"
            )));
        }
        return Ok(parts[0].to_ascii_uppercase());
    }
    let mut parts = identifier.split('.');
    let first = parts.next().unwrap_or_default();
    if let Some(second) = parts.next() {
        let keyword = matches!(
            second.to_ascii_lowercase().as_str(),
            "privatelink" | "global"
        );
        if !second.contains('-') && !keyword && !first.contains('-') {
            return Err(AccountError::Identifier(format!(
                "{identifier:?} looks like the ORGANIZATION.ACCOUNT form SQL uses (e.g. for replication); the SQL API needs the account identifier, with a hyphen: write {first}-{second} (or the account locator with its region, e.g. xy12345.eu-central-1)"
            )));
        }
    }
    Ok(first.to_ascii_uppercase())
}

/// The identifier without scheme and domain, and whether a China domain (`.cn`) was pasted.
fn normalize_identifier(raw: &str) -> Result<(String, bool), AccountError> {
    let mut id = raw.trim();
    for prefix in ["https://", "http://"] {
        if let Some(rest) = id.strip_prefix(prefix) {
            id = rest;
        }
    }
    let id = id.trim_end_matches('/');
    let (id, china) = match id.strip_suffix(".snowflakecomputing.cn") {
        Some(id) => (id, true),
        None => (
            id.strip_suffix(".snowflakecomputing.com").unwrap_or(id),
            false,
        ),
    };
    if id.is_empty() {
        return Err(AccountError::Missing);
    }
    let valid = id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if !valid || id.starts_with('.') || id.ends_with('.') || id.contains("..") {
        return Err(AccountError::Identifier(format!(
            "{id:?} is not a Snowflake account identifier; expected e.g. xy12345.eu-central-1 or myorg-myaccount"
        )));
    }
    Ok((id.to_string(), china))
}

fn parse_host(host: &str) -> Result<Url, AccountError> {
    let with_scheme = if host.contains("://") {
        host.to_string()
    } else {
        format!("https://{host}")
    };
    let url = Url::parse(&with_scheme).map_err(|e| AccountError::Host(e.to_string()))?;
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&url) => {}
        "http" => {
            return Err(AccountError::Host(format!(
                "plain http is refused for {}: credentials and data must travel over TLS; use https:// (http:// is allowed only for loopback addresses such as 127.0.0.1)",
                url.host_str().unwrap_or_default()
            )));
        }
        other => {
            return Err(AccountError::Host(format!(
                "unsupported scheme {other:?}; use https://"
            )));
        }
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(AccountError::Host("no host name in the URL".into()));
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
                matches!(&err, AccountError::Host(d) if d.contains("plain http is refused")),
                "{refused}: {err}"
            );
        }
    }

    #[test]
    fn global_identifier_uses_the_locator_before_the_dash_for_jwt() {
        // snowflake-connector-python auth/keypair.py: account.partition("-")[0] for ".global".
        let a = Account::new("xy12345-mygroup.global", None).unwrap();
        assert_eq!(a.jwt_name, "XY12345");
        assert_eq!(
            a.base_url.as_str(),
            "https://xy12345-mygroup.global.snowflakecomputing.com/"
        );
        let pasted = Account::new(
            "https://XY12345-MyGroup.global.snowflakecomputing.com",
            None,
        )
        .unwrap();
        assert_eq!(pasted, a);
    }

    #[test]
    fn global_identifier_the_connectors_read_differently_is_refused_with_what_to_write() {
        let err = Account::new("myorg-myaccount-group.global", None).unwrap_err();
        assert!(matches!(err, AccountError::Identifier(_)), "{err}");
        let err = err.to_string();
        assert!(err.contains("write the account locator alone"), "{err}");
        assert!(
            err.contains("https://myorg-myaccount-group.global.snowflakecomputing.com"),
            "{err}"
        );
    }

    #[test]
    fn china_regions_use_the_cn_domain() {
        // snowflake-connector-python util_text.py construct_hostname; gosnowflake
        // getDomainBasedOnRegion: a region starting with "cn-" lives under .cn.
        for (id, host) in [
            (
                "xy12345.cn-north-1",
                "https://xy12345.cn-north-1.snowflakecomputing.cn/",
            ),
            (
                "XY12345.CN-NORTHWEST-1.aws",
                "https://xy12345.cn-northwest-1.aws.snowflakecomputing.cn/",
            ),
            (
                "https://xy12345.cn-north-1.snowflakecomputing.cn/",
                "https://xy12345.cn-north-1.snowflakecomputing.cn/",
            ),
        ] {
            let a = Account::new(id, None).unwrap();
            assert_eq!(a.jwt_name, "XY12345", "{id}");
            assert_eq!(a.base_url.as_str(), host, "{id}");
        }
    }

    #[test]
    fn org_dot_account_is_refused_with_the_hyphen_form() {
        let err = Account::new("myorg.myaccount", None).unwrap_err();
        assert!(matches!(err, AccountError::Identifier(_)), "{err}");
        let err = err.to_string();
        assert!(err.contains("ORGANIZATION.ACCOUNT form SQL uses"), "{err}");
        assert!(err.contains("write myorg-myaccount"), "{err}");
        // Not to be confused with a locator and its region, or a PrivateLink name.
        assert!(Account::new("xy12345.us-east-1", None).is_ok());
        assert!(Account::new("xy12345.east-us-2.azure", None).is_ok());
        assert_eq!(
            Account::new("myorg-myaccount.privatelink", None)
                .unwrap()
                .base_url
                .as_str(),
            "https://myorg-myaccount.privatelink.snowflakecomputing.com/"
        );
    }

    #[test]
    fn account_name_with_underscore_keeps_it_in_jwt_and_uses_hyphen_in_host() {
        let a = Account::new("myorg-my_account", None).unwrap();
        assert_eq!(a.jwt_name, "MYORG-MY_ACCOUNT");
        assert_eq!(
            a.base_url.as_str(),
            "https://myorg-my-account.snowflakecomputing.com/"
        );
    }

    #[test]
    fn rejects_identifier_with_spaces() {
        let err = Account::new("my account", None).unwrap_err();
        assert!(matches!(err, AccountError::Identifier(_)), "{err}");
    }

    #[test]
    fn empty_account_is_missing() {
        let err = Account::new("  ", None).unwrap_err();
        assert_eq!(err, AccountError::Missing);
    }
}
