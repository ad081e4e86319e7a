//! The `openssl` command line, for tests that make keys the way Snowflake's docs make them.

use std::io::Write;
use std::process::{Command, Stdio};

/// Runs openssl with `args`, feeding it `stdin`, and returns its stdout; panics with its
/// stderr when it fails.
pub fn openssl(args: &[&str], stdin: Option<&[u8]>) -> Vec<u8> {
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl must be installed for these tests");
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A fresh RSA 2048 private key, unencrypted PKCS#8 PEM.
pub fn rsa_key() -> String {
    let pem = openssl(
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ],
        None,
    );
    String::from_utf8(pem).unwrap()
}
