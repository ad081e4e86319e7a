//! Fix builders: the names a person pastes, and the fix for each failure.

use crate::secrets::{SecretError, SnowflakeSettings};
use crate::snowflake::auth::Credentials;
use crate::snowflake::error::{Fix, fix_text};
use crate::snowflake::identifier::CASE_RULE;
use crate::snowflake::{ErrorKind, Identifier, SnowflakeError};

/// The configured names, for fixes that a person can paste.
pub(super) struct Names {
    pub(super) user: String,
    pub(super) role: Option<Identifier>,
    pub(super) warehouse: Option<Identifier>,
    pub(super) database: Identifier,
    pub(super) schema: Identifier,
    pub(super) public_key: Option<String>,
    pub(super) fingerprint: Option<String>,
}

impl Names {
    pub(super) fn of(settings: &SnowflakeSettings) -> Self {
        let key = match &settings.credentials {
            Credentials::KeyPair { key, .. } => Some(key),
            Credentials::Token(_) => None,
        };
        let session = &settings.session;
        Names {
            user: settings.user.to_ascii_uppercase(),
            role: session.role.clone(),
            warehouse: session.warehouse.clone(),
            database: session
                .database
                .clone()
                .expect("the secret's database is required"),
            schema: session
                .schema
                .clone()
                .expect("the secret's schema is required"),
            public_key: key.map(|k| k.public_key().to_string()),
            fingerprint: key.map(|k| k.fingerprint().to_string()),
        }
    }

    /// The role as SQL, or a placeholder when the secret names none.
    pub(super) fn role(&self) -> String {
        self.role
            .as_ref()
            .map_or("<the user's default role>".into(), ToString::to_string)
    }

    pub(super) fn grants(&self) -> String {
        let (role, db, schema) = (self.role(), &self.database, &self.schema);
        let warehouse = self
            .warehouse
            .as_ref()
            .map_or("<warehouse>".into(), ToString::to_string);
        format!(
            "Run as an admin: GRANT USAGE ON WAREHOUSE {warehouse} TO ROLE {role}; GRANT USAGE ON DATABASE {db} TO ROLE {role}; GRANT USAGE ON SCHEMA {db}.{schema} TO ROLE {role}; GRANT CREATE TABLE ON SCHEMA {db}.{schema} TO ROLE {role}; GRANT INSERT, SELECT ON ALL TABLES IN SCHEMA {db}.{schema} TO ROLE {role}; GRANT INSERT, SELECT ON FUTURE TABLES IN SCHEMA {db}.{schema} TO ROLE {role};"
        )
    }
}

pub(super) fn secret_fix(error: &SecretError) -> String {
    match error {
        SecretError::Fetch { .. } => "Check TRACKLAYER_SECRET_ID and that the function's role may call secretsmanager:GetSecretValue on that secret.".into(),
        SecretError::NotText(_) => "Store the settings as the secret's JSON text (SecretString), not as binary.".into(),
        SecretError::Invalid { source, .. } => match source.field() {
            "password" => "Switch to key-pair authentication (generate a key, ALTER USER ... SET RSA_PUBLIC_KEY, store private_key in the secret) or store a programmatic access token as token.".into(),
            field @ ("database" | "schema" | "warehouse" | "role") => format!(
                "Correct the secret's {field}: {CASE_RULE}. A name with other characters (a hyphen, a space) must have been created in double quotes: write it with them."
            ),
            field => format!("Correct the secret's {field} field (see README, Configuration)."),
        },
    }
}

/// The check that reports a context error Snowflake answered instead of running a statement.
pub(super) fn context_check(e: &SnowflakeError) -> Option<&'static str> {
    match e.code()? {
        "390189" => Some("role"),
        "000606" | "391918" => Some("warehouse"),
        "090105" | "390201" => Some("database"),
        "090106" => Some("schema"),
        _ => None,
    }
}

/// How to write `exact` in the secret so it means exactly that name.
pub(super) fn spelling(exact: &str) -> String {
    match Identifier::parse(exact) {
        Ok(id) if id.as_str() == exact => exact.to_string(),
        _ => format!("\"{}\"", exact.replace('"', "\"\"")),
    }
}

/// The other reading of what the secret wrote: `tracklayer_wh` could have been meant as the
/// quoted lower-case name, `"Tracklayer_wh"` as the plain upper-case one.
pub(super) fn other_reading(id: &Identifier) -> Option<String> {
    let written = id.written();
    let other = if written.starts_with('"') {
        Identifier::parse(&written[1..written.len() - 1])
            .ok()?
            .as_str()
            .to_string()
    } else {
        written.to_string()
    };
    (other != id.as_str()).then_some(other)
}

/// `the secret's warehouse is "Tracklayer_wh", which means exactly Tracklayer_wh`.
pub(super) fn means(field: &str, id: &Identifier) -> String {
    if id.written() == id.as_str() {
        format!("the secret's {field} is {}", id.written())
    } else {
        format!(
            "the secret's {field} is {}, which means exactly {}",
            id.written(),
            id.as_str()
        )
    }
}

/// Detail and fix when Snowflake's `CURRENT_<FIELD>()` is not the configured `field` name.
pub(super) fn mismatch(
    field: &str,
    id: &Identifier,
    current: Option<&str>,
    role: &str,
) -> (String, String) {
    let upper = field.to_ascii_uppercase();
    let means = means(field, id);
    let grant = if field == "role" {
        format!("GRANT ROLE {id} TO USER <the service user>")
    } else {
        format!("GRANT USAGE ON {upper} {id} TO ROLE {role}")
    };
    match current {
        Some(current) => (
            format!("{means}, but statements run in {field} {current} (CURRENT_{upper}())"),
            format!(
                "Write the secret's {field} as {} to use {current}, or {grant}; {CASE_RULE}.",
                json_string(&spelling(current)),
            ),
        ),
        None => {
            let hint = other_reading(id)
                .map(|other| {
                    format!(
                        " If SHOW {upper}S lists it as {other}, write the secret's {field} as {}.",
                        json_string(&spelling(&other))
                    )
                })
                .unwrap_or_default();
            (
                format!(
                    "{means}, but CURRENT_{upper}() is NULL: no {field} of exactly that name is usable by role {role}"
                ),
                format!(
                    "Names are case-sensitive: {CASE_RULE}.{hint} Otherwise create it or {grant}."
                ),
            )
        }
    }
}

/// A secret value as it goes into the JSON (quotes escaped).
pub(super) fn json_string(value: &str) -> String {
    serde_json::Value::String(value.to_string()).to_string()
}

pub(super) fn auth_fix(e: &SnowflakeError, names: &Names) -> String {
    let user = &names.user;
    let register = match (&names.public_key, &names.fingerprint) {
        (Some(key), Some(fp)) => format!(
            " The secret's key has fingerprint {fp}; if DESC USER {user} shows another RSA_PUBLIC_KEY_FP, register this key: ALTER USER {user} SET RSA_PUBLIC_KEY='{key}'; (use RSA_PUBLIC_KEY_2 to rotate without downtime)."
        ),
        _ => String::new(),
    };
    match e.advice() {
        Some((
            fix @ (Fix::Password | Fix::Pat | Fix::NetworkPolicy | Fix::PatNetworkPolicy),
            api,
        )) => fix_text(fix, api, Some(user)),
        Some((Fix::Jwt, api)) => {
            let reason = api
                .login_failure_id()
                .map(|id| format!(
                " Snowflake logged the reason under login failure {id}; an administrator (ACCOUNTADMIN, or a role with MONITOR) reads it with: SELECT JSON_EXTRACT_PATH_TEXT(SYSTEM$GET_LOGIN_FAILURE_DETAILS('{id}'), 'errorCode'); (for example JWT_TOKEN_INVALID_PUBLIC_KEY_FINGERPRINT_MISMATCH: register the key below)."
            ))
            .unwrap_or_default();
            format!(
                "JWT rejected.{reason} Check that the secret's account and user ({user}) are Snowflake's and the clock is right.{register}"
            )
        }
        _ if e.kind() == ErrorKind::Authentication => format!(
            "Snowflake refused the credentials: check that the secret's account and user ({user}) are Snowflake's and the clock is right.{register}"
        ),
        _ => e.fix(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigError;

    fn id(raw: &str) -> Identifier {
        Identifier::parse(raw).unwrap()
    }

    #[test]
    fn null_context_names_the_setting_both_spellings_and_the_case_rule() {
        let (detail, fix) = mismatch("warehouse", &id("analytics_wh"), None, "R");
        assert_eq!(
            detail,
            "the secret's warehouse is analytics_wh, which means exactly ANALYTICS_WH, but CURRENT_WAREHOUSE() is NULL: no warehouse of exactly that name is usable by role R"
        );
        assert!(
            fix.contains(r#"If SHOW WAREHOUSES lists it as analytics_wh, write the secret's warehouse as "\"analytics_wh\"""#),
            "{fix}"
        );
        assert!(fix.contains(CASE_RULE), "{fix}");
        assert!(
            fix.contains("GRANT USAGE ON WAREHOUSE ANALYTICS_WH TO ROLE R"),
            "{fix}"
        );

        let (_, fix) = mismatch("database", &id("\"Tracklayer\""), None, "R");
        assert!(
            fix.contains(r#"If SHOW DATABASES lists it as TRACKLAYER, write the secret's database as "TRACKLAYER""#),
            "{fix}"
        );
    }

    #[test]
    fn another_context_says_how_to_write_the_name_snowflake_uses() {
        let (detail, fix) = mismatch("role", &id("\"writer\""), Some("PUBLIC"), "\"writer\"");
        assert_eq!(
            detail,
            "the secret's role is \"writer\", which means exactly writer, but statements run in role PUBLIC (CURRENT_ROLE())"
        );
        assert!(
            fix.starts_with(r#"Write the secret's role as "PUBLIC" to use PUBLIC"#),
            "{fix}"
        );
        let (_, fix) = mismatch("schema", &id("EVENTS"), Some("Events"), "R");
        assert!(
            fix.starts_with(r#"Write the secret's schema as "\"Events\"" to use Events"#),
            "{fix}"
        );
    }

    #[test]
    fn secret_errors_get_their_fix_from_the_variant_not_the_text() {
        let invalid = |field: &'static str| SecretError::Invalid {
            secret_id: "s".into(),
            source: ConfigError::Invalid {
                field,
                detail: "cannot read secret password:".into(),
            },
        };
        assert!(secret_fix(&invalid("password")).starts_with("Switch to key-pair"));
        assert!(
            secret_fix(&invalid("warehouse"))
                .starts_with("Correct the secret's warehouse: names in the secret")
        );
        assert_eq!(
            secret_fix(&invalid("account")),
            "Correct the secret's account field (see README, Configuration)."
        );
        let fetch = SecretError::Fetch {
            secret_id: "password:".into(),
            detail: "denied".into(),
        };
        assert!(secret_fix(&fetch).starts_with("Check TRACKLAYER_SECRET_ID"));
        assert!(secret_fix(&SecretError::NotText("s".into())).contains("SecretString"));
    }

    /// connection-test's authentication fix, chosen by the table's row for the code (never by
    /// the message): the shared credential fixes with the user named, the JWT lookup with the
    /// key to register, and the table's own fix for what is not a credential refusal.
    #[test]
    fn authentication_fixes_follow_the_table_row_of_the_code() {
        let names = Names {
            user: "SVC".into(),
            role: Some(id("WRITER")),
            warehouse: Some(id("WH")),
            database: id("DB"),
            schema: id("EVENTS"),
            public_key: Some("MIIB".into()),
            fingerprint: Some("SHA256:abc=".into()),
        };
        let fix = |status: u16, code: &str, message: &str| {
            auth_fix(
                &SnowflakeError::from(crate::snowflake::ApiError {
                    http_status: status,
                    code: code.into(),
                    message: message.into(),
                    ..Default::default()
                }),
                &names,
            )
        };
        let register = " The secret's key has fingerprint SHA256:abc=; if DESC USER SVC shows another RSA_PUBLIC_KEY_FP, register this key: ALTER USER SVC SET RSA_PUBLIC_KEY='MIIB'; (use RSA_PUBLIC_KEY_2 to rotate without downtime).";
        assert_eq!(
            fix(
                401,
                "390100",
                "Incorrect username or password was specified."
            ),
            "Incorrect username or password: use the service user SVC, not a personal login; rotate its credentials and update the secret."
        );
        assert_eq!(
            fix(401, "390432", ""),
            "A programmatic access token needs a network policy: create one allowing the loader's egress IPs and ALTER USER SVC SET NETWORK_POLICY = <policy>."
        );
        assert_eq!(
            fix(401, "390422", "Network policy blocks login."),
            "Network policy blocks login: Snowflake did not say which address it saw: add the loader's egress IPs (the NAT gateway's Elastic IP when the functions run in a VPC, see docs/snowflake-setup.md) to the network policy attached to SVC, then run connection-test again."
        );
        assert_eq!(
            fix(
                401,
                "390144",
                "JWT token is invalid. [0ce9eb56-821d-4ca9-a774-04ae89a0cf5a]"
            ),
            format!(
                "JWT rejected. Snowflake logged the reason under login failure 0ce9eb56-821d-4ca9-a774-04ae89a0cf5a; an administrator (ACCOUNTADMIN, or a role with MONITOR) reads it with: SELECT JSON_EXTRACT_PATH_TEXT(SYSTEM$GET_LOGIN_FAILURE_DETAILS('0ce9eb56-821d-4ca9-a774-04ae89a0cf5a'), 'errorCode'); (for example JWT_TOKEN_INVALID_PUBLIC_KEY_FINGERPRINT_MISMATCH: register the key below). Check that the secret's account and user (SVC) are Snowflake's and the clock is right.{register}"
            )
        );
        // A message that reads like another code's does not change the fix.
        assert_eq!(
            fix(
                401,
                "390144",
                "Incorrect username or password was specified."
            ),
            format!(
                "JWT rejected. Check that the secret's account and user (SVC) are Snowflake's and the clock is right.{register}"
            )
        );
        let refused = format!(
            "Snowflake refused the credentials: check that the secret's account and user (SVC) are Snowflake's and the clock is right.{register}"
        );
        assert_eq!(fix(401, "394304", ""), refused);
        assert_eq!(fix(403, "", "<html>Forbidden</html>"), refused);
        assert_eq!(
            fix(422, "003001", "Insufficient privileges"),
            "The role lacks a grant: GRANT USAGE on the warehouse, database and schema, CREATE TABLE on the schema and INSERT, SELECT on the tables to role <the loader's role> (see infra/sql/setup.sql)."
        );
    }

    #[test]
    fn context_errors_are_reported_by_the_check_of_their_setting() {
        let error = |code: &str| {
            SnowflakeError::from(crate::snowflake::ApiError {
                http_status: 422,
                code: code.into(),
                ..Default::default()
            })
        };
        for (code, check) in [
            ("390189", Some("role")),
            ("000606", Some("warehouse")),
            ("391918", Some("warehouse")),
            ("090105", Some("database")),
            ("390201", Some("database")),
            ("090106", Some("schema")),
            ("003001", None),
        ] {
            assert_eq!(context_check(&error(code)), check, "{code}");
        }
    }
}
