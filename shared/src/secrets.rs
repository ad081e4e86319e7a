//! Snowflake credentials from AWS Secrets Manager: fetched by id, validated field by field,
//! cached with a TTL and fetched again after an authentication failure.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::config::ConfigError;
use crate::snowflake::auth::{Authenticator, Credentials, KeyFormat, KeyPair};
use crate::snowflake::identifier::CASE_RULE;
use crate::snowflake::{
    Account, AccountError, Client, Identifier, KeyError, RetryPolicy, SessionContext,
    SnowflakeError,
};

/// The secret's JSON, as stored. `privateKey` and `passphrase` are accepted as in AWS's
/// managed Snowflake key-pair secret.
#[derive(Deserialize, Default)]
struct SecretFields {
    account: Option<String>,
    user: Option<String>,
    #[serde(alias = "privateKey")]
    private_key: Option<String>,
    #[serde(alias = "passphrase")]
    private_key_passphrase: Option<String>,
    token: Option<String>,
    password: Option<String>,
    role: Option<String>,
    warehouse: Option<String>,
    database: Option<String>,
    schema: Option<String>,
    host: Option<String>,
}

/// Validated connection settings from the secret. `Debug` shows no secret material.
pub struct SnowflakeSettings {
    /// Account (URL and JWT name).
    pub account: Account,
    /// Service user name, as given.
    pub user: String,
    /// Key pair or token.
    pub credentials: Credentials,
    /// Database, schema, warehouse, role: resolved as Snowflake identifiers (unquoted →
    /// upper case, `"Quoted"` → exact).
    pub session: SessionContext,
}

impl fmt::Debug for SnowflakeSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnowflakeSettings")
            .field("account", &self.account)
            .field("user", &self.user)
            .field("credentials", &self.credentials)
            .field("session", &self.session)
            .finish()
    }
}

impl SnowflakeSettings {
    /// Parses and validates the secret's JSON text.
    pub fn from_json(text: &str) -> Result<Self, ConfigError> {
        let fields: SecretFields = serde_json::from_str(text).map_err(|e| ConfigError::Invalid {
            field: "secret",
            detail: format!(
                "the secret is not a JSON object with string fields ({:?} error at line {} column {}); expected keys account, user, private_key or token, database, schema",
                e.classify(),
                e.line(),
                e.column()
            ),
        })?;
        let present = |v: Option<String>| v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
        let account = present(fields.account).ok_or(ConfigError::missing("account"))?;
        let user = present(fields.user).ok_or(ConfigError::missing("user"))?;
        let account = account_of(&account, present(fields.host).as_deref())?;
        let credentials = match (
            present(fields.private_key),
            present(fields.token),
            present(fields.password),
        ) {
            (Some(pem), _, _) => {
                let (key, format) =
                    KeyPair::from_pem(&pem, fields.private_key_passphrase.as_deref())
                        .map_err(key_error)?;
                Credentials::KeyPair { key, format }
            }
            (None, Some(token), _) => Credentials::Token(token),
            (None, None, Some(_)) => {
                return Err(ConfigError::Invalid {
                    field: "password",
                    detail: "the secret holds only a password. Snowflake's SQL API does not accept passwords, and Snowflake blocks single-factor password sign-in for service users. Store a key pair instead (private_key, plus private_key_passphrase if it is encrypted; register the public key with ALTER USER ... SET RSA_PUBLIC_KEY) or a programmatic access token (token).".into(),
                });
            }
            (None, None, None) => {
                return Err(ConfigError::Invalid {
                    field: "private_key",
                    detail: "missing; the secret needs private_key (key-pair authentication, preferred) or token (a programmatic access token)".into(),
                });
            }
        };
        let name = |field: &'static str, value: Option<String>| {
            present(value)
                .map(|raw| identifier(field, &raw))
                .transpose()
        };
        let database =
            name("database", fields.database)?.ok_or(ConfigError::missing("database"))?;
        let schema = name("schema", fields.schema)?.ok_or(ConfigError::missing("schema"))?;
        Ok(SnowflakeSettings {
            account,
            user,
            credentials,
            session: SessionContext {
                database: Some(database),
                schema: Some(schema),
                warehouse: name("warehouse", fields.warehouse)?,
                role: name("role", fields.role)?,
            },
        })
    }

    /// A SQL API client for these settings.
    pub fn into_client(self, retry: RetryPolicy) -> Result<Client, SnowflakeError> {
        let auth = Authenticator::new(&self.account.jwt_name, &self.user, self.credentials);
        Client::new(self.account, auth, self.session, retry)
    }
}

/// The secret's `account` and `host` as a Snowflake account.
fn account_of(identifier: &str, host: Option<&str>) -> Result<Account, ConfigError> {
    Account::new(identifier, host).map_err(|e| match e {
        AccountError::Missing => ConfigError::missing("account"),
        AccountError::Identifier(detail) => ConfigError::Invalid {
            field: "account",
            detail,
        },
        AccountError::Host(detail) => ConfigError::Invalid {
            field: "host",
            detail,
        },
    })
}

/// The secret field `field` read as a Snowflake identifier; a refusal says how to quote it.
fn identifier(field: &'static str, raw: &str) -> Result<Identifier, ConfigError> {
    Identifier::parse(raw).map_err(|e| ConfigError::Invalid {
        field,
        detail: format!(
            "{e}. To keep a name exactly as written, put it in double quotes inside the JSON string (\"{field}\": \"\\\"{}\\\"\"); {CASE_RULE}",
            raw.trim_matches('"').replace('"', "\"\"")
        ),
    })
}

/// A key the secret's `private_key` (and `private_key_passphrase`) cannot give, as the
/// field to correct and how.
fn key_error(error: KeyError) -> ConfigError {
    let (field, detail) = match &error {
        KeyError::NoPassphrase => (
            "private_key_passphrase",
            "the private key is encrypted (BEGIN ENCRYPTED PRIVATE KEY) but the secret has no private_key_passphrase; add it to the secret".into(),
        ),
        KeyError::Unreadable {
            format: KeyFormat::EncryptedPkcs8,
            why,
        } => (
            "private_key_passphrase",
            format!(
                "cannot decrypt private_key with the given passphrase ({}); check the passphrase, or re-export the key with `openssl pkcs8 -topk8 -v2 aes-256-cbc`",
                why.describe()
            ),
        ),
        KeyError::LegacyEncrypted => (
            "private_key",
            "legacy encrypted PKCS#1 keys are not supported; convert with `openssl pkcs8 -topk8 -v2 aes-256-cbc -in key.pem -out rsa_key.p8`".into(),
        ),
        KeyError::NotPem => (
            "private_key",
            "expected a PEM RSA private key (BEGIN PRIVATE KEY, BEGIN ENCRYPTED PRIVATE KEY or BEGIN RSA PRIVATE KEY)".into(),
        ),
        KeyError::Unreadable { .. } | KeyError::Sign(_) => ("private_key", error.to_string()),
    };
    ConfigError::Invalid { field, detail }
}

/// Fetching the secret failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SecretError {
    /// Secrets Manager refused or could not be reached.
    #[error(
        "cannot read secret {secret_id:?} from Secrets Manager: {detail}. Check TRACKLAYER_SECRET_ID and that the function's role may call secretsmanager:GetSecretValue on it"
    )]
    Fetch {
        /// The secret's name or ARN.
        secret_id: String,
        /// What AWS said.
        detail: String,
    },
    /// The secret has no string value.
    #[error("secret {0:?} has no SecretString; store the settings as JSON text")]
    NotText(String),
    /// The secret's content is invalid.
    #[error("secret {secret_id:?}: {source}")]
    Invalid {
        /// The secret's name or ARN.
        secret_id: String,
        /// The field and what is wrong.
        source: ConfigError,
    },
}

/// Reads one secret and keeps a ready [`Client`] for it, renewed after the TTL.
pub struct SecretSource {
    secrets: aws_sdk_secretsmanager::Client,
    secret_id: String,
    ttl: Duration,
    retry: RetryPolicy,
    cached: Mutex<Option<(Arc<Client>, Instant)>>,
}

impl fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretSource")
            .field("secret_id", &self.secret_id)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl SecretSource {
    /// A source for `secret_id` (name or ARN), caching for `ttl`.
    pub fn new(
        secrets: aws_sdk_secretsmanager::Client,
        secret_id: String,
        ttl: Duration,
        retry: RetryPolicy,
    ) -> Self {
        SecretSource {
            secrets,
            secret_id,
            ttl,
            retry,
            cached: Mutex::new(None),
        }
    }

    /// The secret's id.
    pub fn secret_id(&self) -> &str {
        &self.secret_id
    }

    /// The current client: cached while younger than the TTL, else built from a fresh fetch.
    pub async fn client(&self) -> Result<Arc<Client>, SnowflakeError> {
        let mut cached = self.cached.lock().await;
        if let Some((client, fetched)) = cached.as_ref()
            && fetched.elapsed() < self.ttl
        {
            return Ok(client.clone());
        }
        let settings = self.settings().await.map_err(SnowflakeError::setup)?;
        let client = Arc::new(settings.into_client(self.retry)?);
        *cached = Some((client.clone(), Instant::now()));
        Ok(client)
    }

    /// Forgets the cached client so the next call fetches the secret again (after an
    /// authentication failure, to pick up a rotated key).
    pub async fn invalidate(&self) {
        *self.cached.lock().await = None;
    }

    /// Fetches and validates the secret.
    pub async fn settings(&self) -> Result<SnowflakeSettings, SecretError> {
        let text = self.fetch_text().await?;
        SnowflakeSettings::from_json(&text).map_err(|source| SecretError::Invalid {
            secret_id: self.secret_id.clone(),
            source,
        })
    }

    async fn fetch_text(&self) -> Result<String, SecretError> {
        let output = self
            .secrets
            .get_secret_value()
            .secret_id(&self.secret_id)
            .send()
            .await
            .map_err(|e| SecretError::Fetch {
                secret_id: self.secret_id.clone(),
                detail: aws_sdk_secretsmanager::error::DisplayErrorContext(&e).to_string(),
            })?;
        output
            .secret_string
            .ok_or_else(|| SecretError::NotText(self.secret_id.clone()))
    }
}

/// Where the client comes from: the credentials secret ([`SecretSource`]), cached, and
/// forgotten after Snowflake refuses it.
pub(crate) trait ClientSource: Sync {
    /// The client type handed out.
    type Client;
    /// The current client, built from the secret when none is cached.
    fn client(&self) -> impl Future<Output = Result<Arc<Self::Client>, SnowflakeError>> + Send;
    /// Forgets the cached client, so the next [`ClientSource::client`] reads the secret again.
    fn invalidate(&self) -> impl Future<Output = ()> + Send;
    /// The secret's id, for logs.
    fn secret_id(&self) -> &str;
}

impl ClientSource for SecretSource {
    type Client = Client;

    fn client(&self) -> impl Future<Output = Result<Arc<Client>, SnowflakeError>> + Send {
        SecretSource::client(self)
    }

    fn invalidate(&self) -> impl Future<Output = ()> + Send {
        SecretSource::invalidate(self)
    }

    fn secret_id(&self) -> &str {
        SecretSource::secret_id(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snowflake::auth::tests::generate_pkcs8;
    use serde_json::json;

    fn base() -> serde_json::Value {
        json!({"account": "xy12345.eu-central-1", "user": "tracklayer_svc", "database": "TRACKLAYER", "schema": "EVENTS", "token": "pat-value"})
    }

    #[test]
    fn reads_pat_secret_with_session_context() {
        let mut s = base();
        s["role"] = json!("TRACKLAYER_WRITER");
        s["warehouse"] = json!("ANALYTICS_WH");
        let settings = SnowflakeSettings::from_json(&s.to_string()).unwrap();
        assert_eq!(settings.account.jwt_name, "XY12345");
        assert!(matches!(settings.credentials, Credentials::Token(ref t) if t == "pat-value"));
        let name = |id: &Option<Identifier>| id.as_ref().map(|i| i.as_str().to_string());
        assert_eq!(
            name(&settings.session.role).as_deref(),
            Some("TRACKLAYER_WRITER")
        );
        assert_eq!(
            name(&settings.session.warehouse).as_deref(),
            Some("ANALYTICS_WH")
        );
        assert!(!format!("{settings:?}").contains("pat-value"));
    }

    #[test]
    fn names_are_read_as_snowflake_identifiers() {
        let mut s = base();
        s["database"] = json!("tracklayer");
        s["schema"] = json!(" events ");
        s["warehouse"] = json!("\"Analytics_wh\"");
        s["role"] = json!("tracklayer_writer");
        let session = SnowflakeSettings::from_json(&s.to_string())
            .unwrap()
            .session;
        let exact = |id: Option<Identifier>| id.unwrap().as_str().to_string();
        assert_eq!(exact(session.database), "TRACKLAYER");
        assert_eq!(exact(session.schema), "EVENTS");
        assert_eq!(exact(session.warehouse), "Analytics_wh");
        assert_eq!(exact(session.role), "TRACKLAYER_WRITER");
    }

    #[test]
    fn a_name_snowflake_cannot_read_names_its_field_and_the_quoted_form() {
        for field in ["database", "schema", "warehouse", "role"] {
            let mut s = base();
            s[field] = json!("my-name");
            let err = SnowflakeSettings::from_json(&s.to_string()).unwrap_err();
            let text = err.to_string();
            assert!(text.starts_with(&format!("{field}: ")), "{text}");
            assert!(text.contains(r#"\"my-name\""#), "{text}");
        }
    }

    #[test]
    fn accepts_aws_managed_field_names() {
        let pem = generate_pkcs8();
        let mut s = base();
        s.as_object_mut().unwrap().remove("token");
        s["privateKey"] = json!(pem);
        s["passphrase"] = json!("");
        let settings = SnowflakeSettings::from_json(&s.to_string()).unwrap();
        assert!(matches!(settings.credentials, Credentials::KeyPair { .. }));
        let shown = format!("{settings:?}");
        assert!(!shown.contains(pem.lines().nth(1).unwrap()), "{shown}");
    }

    #[test]
    fn each_missing_field_is_named() {
        for field in ["account", "user", "database", "schema"] {
            let mut s = base();
            s.as_object_mut().unwrap().remove(field);
            let err = SnowflakeSettings::from_json(&s.to_string()).unwrap_err();
            assert_eq!(err, ConfigError::missing(field));
        }
        let mut s = base();
        s.as_object_mut().unwrap().remove("token");
        let err = SnowflakeSettings::from_json(&s.to_string()).unwrap_err();
        assert!(err.to_string().starts_with("private_key: missing"), "{err}");
    }

    #[test]
    fn password_only_secret_explains_why_and_what_instead() {
        let mut s = base();
        s.as_object_mut().unwrap().remove("token");
        s["password"] = json!("replace_with_a_long_generated_secret");
        let err = SnowflakeSettings::from_json(&s.to_string())
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("password: "), "{err}");
        assert!(err.contains("SQL API does not accept passwords"), "{err}");
        assert!(err.contains("programmatic access token"), "{err}");
        assert!(!err.contains("replace_with_a_long_generated_secret"));
    }

    #[test]
    fn key_errors_name_the_secret_field_to_correct() {
        use crate::snowflake::auth::Unreadable;
        let text = |e: KeyError| key_error(e).to_string();
        assert_eq!(
            text(KeyError::NoPassphrase),
            "private_key_passphrase: the private key is encrypted (BEGIN ENCRYPTED PRIVATE KEY) but the secret has no private_key_passphrase; add it to the secret"
        );
        assert_eq!(
            text(KeyError::Unreadable {
                format: KeyFormat::EncryptedPkcs8,
                why: Unreadable::Decrypt
            }),
            "private_key_passphrase: cannot decrypt private_key with the given passphrase (wrong passphrase or unsupported cipher); check the passphrase, or re-export the key with `openssl pkcs8 -topk8 -v2 aes-256-cbc`"
        );
        assert_eq!(
            text(KeyError::Unreadable {
                format: KeyFormat::Pkcs8,
                why: Unreadable::NotRsa
            }),
            "private_key: not a readable PKCS#8 RSA private key (not an RSA key)"
        );
        assert_eq!(
            text(KeyError::Unreadable {
                format: KeyFormat::Pkcs1,
                why: Unreadable::NotAKey
            }),
            "private_key: not a readable PKCS#1 RSA private key (not an RSA private key)"
        );
        assert_eq!(
            text(KeyError::Unreadable {
                format: KeyFormat::Pkcs8,
                why: Unreadable::TooShort
            }),
            "private_key: not a readable PKCS#8 RSA private key (the key is shorter than 2048 bits; generate a 2048-bit key)"
        );
        assert_eq!(
            text(KeyError::LegacyEncrypted),
            "private_key: legacy encrypted PKCS#1 keys are not supported; convert with `openssl pkcs8 -topk8 -v2 aes-256-cbc -in key.pem -out rsa_key.p8`"
        );
        assert_eq!(
            text(KeyError::NotPem),
            "private_key: expected a PEM RSA private key (BEGIN PRIVATE KEY, BEGIN ENCRYPTED PRIVATE KEY or BEGIN RSA PRIVATE KEY)"
        );
        assert_eq!(
            text(KeyError::Sign("InvalidRsaKey".into())),
            "private_key: cannot sign a JWT with this key: InvalidRsaKey"
        );
    }

    #[test]
    fn account_errors_name_account_or_host() {
        let field = |identifier: &str, host: Option<&str>| {
            account_of(identifier, host).unwrap_err().field()
        };
        assert_eq!(account_of("  ", None), Err(ConfigError::missing("account")));
        assert_eq!(field("my account", None), "account");
        assert_eq!(field("myorg.myaccount", None), "account");
        assert_eq!(field("xy12345", Some("http://example.com")), "host");
    }

    #[test]
    fn names_snowflake_would_not_read_are_refused_with_the_quoted_spelling() {
        for raw in [
            "my-wh", "my wh", "1wh", "$wh", "\"a\"b\"", "\"\"", "wh\"", "\"wh",
        ] {
            let err = identifier("warehouse", raw).unwrap_err();
            let text = err.to_string();
            assert!(text.starts_with("warehouse: "), "{raw}: {text}");
            assert!(text.contains("double quotes"), "{raw}: {text}");
            assert!(text.contains("ANALYTICS_WH"), "{raw}: {text}");
        }
        let err = identifier("database", "my-db").unwrap_err().to_string();
        assert!(err.contains(r#""database": "\"my-db\"""#), "{err}");
    }

    #[test]
    fn non_json_secret_is_named() {
        let err = SnowflakeSettings::from_json("account=x").unwrap_err();
        assert!(err.to_string().starts_with("secret: "), "{err}");
    }
}
