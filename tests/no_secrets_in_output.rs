//! Private keys, passphrases, tokens and JWTs never appear in logs, errors or `Debug` output,
//! on success and on every failure path.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tracklayer::load::{LoadSettings, Loader};
use tracklayer::secrets::{SecretSource, SnowflakeSettings};
use tracklayer::snowflake::Statement;
use tracklayer_tests::{
    Emulator, aws, create_secret, exclusive, fast_retry, openssl_rsa_key, public_pem, setting,
};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn encrypt(pem: &str, passphrase: &str) -> String {
    use std::io::Write as _;
    let mut child = std::process::Command::new("openssl")
        .args([
            "pkcs8",
            "-topk8",
            "-v2",
            "des3",
            "-passout",
            &format!("pass:{passphrase}"),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(pem.as_bytes())
        .unwrap();
    String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap()
}

async fn secret_loader(secret: serde_json::Value) -> Loader {
    let secrets = aws_sdk_secretsmanager::Client::new(&aws().await);
    let name = create_secret(&secrets, "tracklayer/leak-test", &secret).await;
    Loader::new(
        SecretSource::new(secrets, name, Duration::from_secs(300), fast_retry()),
        LoadSettings::default(),
    )
}

/// Runs `SELECT 1 AS ONE` with `loader`: its result and the client it used, as Debug shows them.
async fn select_one(loader: &Loader) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let ok = loader
        .run(Statement::new("SELECT 1 AS ONE"), deadline)
        .await
        .unwrap();
    format!("{ok:?} {:?}", loader.source().client().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_never_reach_logs_errors_or_debug_output() {
    let _guard = exclusive().await;
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .init();

    let emulator = Emulator::default();
    emulator.clean().await;
    let passphrase = "correct-horse-battery-staple-42";
    let key = openssl_rsa_key();
    let encrypted = encrypt(&key, passphrase);
    let pat = format!("pat-{}", uuid::Uuid::new_v4().simple());
    let user = "LEAK_TEST_USER";
    emulator
        .register_user(json!({"account": setting("SNOWFLAKE_ACCOUNT"), "user": user, "rsa_public_key": public_pem(&key), "pats": [{"token": pat}], "default_warehouse": "TRACKLAYER_WH"}))
        .await;
    let base = json!({"account": setting("SNOWFLAKE_ACCOUNT"), "user": user, "database": "TRACKLAYER", "schema": "EVENTS", "warehouse": "TRACKLAYER_WH", "host": setting("SNOWFLAKE_EMULATOR_URL")});
    let with = |extra: serde_json::Value| {
        let mut secret = base.clone();
        secret
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        secret
    };
    let deadline = || tokio::time::Instant::now() + Duration::from_secs(30);
    let mut shown = Vec::new();

    // Success with an encrypted key, with transient failures logged on the way.
    emulator.fault(json!({"match": {"statement_contains": "SELECT"}, "count": 2, "action": {"status": 503}})).await;
    let loader = secret_loader(with(
        json!({"private_key": encrypted, "private_key_passphrase": passphrase}),
    ))
    .await;
    shown.push(format!("{} {loader:?}", select_one(&loader).await));

    // Success with a PAT.
    let loader = secret_loader(with(json!({"token": pat}))).await;
    shown.push(select_one(&loader).await);

    // Failures: an unregistered key, a revoked/unknown PAT, a wrong passphrase, a password.
    let other_key = openssl_rsa_key();
    for secret in [
        with(json!({"private_key": other_key})),
        with(json!({"token": format!("{pat}-wrong")})),
        with(json!({"private_key": encrypted, "private_key_passphrase": "not-the-passphrase"})),
        with(json!({"password": passphrase})),
    ] {
        let loader = secret_loader(secret.clone()).await;
        let err = loader
            .run(Statement::new("SELECT 1"), deadline())
            .await
            .unwrap_err();
        shown.push(format!("{err} {err:?} {}", err.fix()));
        if let Err(e) = SnowflakeSettings::from_json(&secret.to_string()) {
            shown.push(format!("{e} {e:?}"));
        }
    }
    emulator.clean().await;

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("resubmitting with retry=true"),
        "the transient failures were logged: {logs}"
    );
    assert!(
        logs.contains("reading the secret again"),
        "the auth failures were logged: {logs}"
    );
    let everything = format!("{logs}\n{}", shown.join("\n"));
    let key_lines: Vec<&str> = key
        .lines()
        .chain(encrypted.lines())
        .chain(other_key.lines())
        .filter(|l| !l.starts_with("-----"))
        .collect();
    for line in key_lines {
        assert!(!everything.contains(line), "a private key line leaked");
    }
    assert!(!everything.contains(passphrase), "the passphrase leaked");
    assert!(!everything.contains(&pat), "the PAT leaked");
    assert!(!everything.contains("eyJ"), "a JWT leaked");
    assert!(
        !everything.contains("Bearer "),
        "an Authorization header leaked"
    );
}
