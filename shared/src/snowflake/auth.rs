//! Authentication for the SQL API: key-pair JWTs (RS256) and programmatic access tokens.
//!
//! Nothing here prints secret material: `Debug` on every type holding a key, token or JWT
//! shows only public facts (the key's fingerprint, the token type).

use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::KeyPair as RsaKeyPair;
use aws_lc_rs::signature::KeyPair as _;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use pkcs8::der::SecretDocument;
use pkcs8::{EncryptedPrivateKeyInfoRef, ObjectIdentifier, PrivateKeyInfoRef};

/// Snowflake caps key-pair JWTs at one hour; we ask for a little less.
const JWT_LIFETIME: Duration = Duration::from_secs(59 * 60);
/// A cached JWT is replaced when less than this is left, so no request carries a dying token.
const JWT_RENEW_BEFORE: Duration = Duration::from_secs(5 * 60);
/// `rsaEncryption` (RFC 8017 appendix A.1): the algorithm of a PKCS#8 RSA key.
const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

/// An RSA private key ready to sign Snowflake JWTs.
pub struct KeyPair {
    signing_key: EncodingKey,
    fingerprint: String,
    public_key: String,
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyPair")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

/// Which private-key format a PEM held (reported by connection-test).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFormat {
    /// `BEGIN PRIVATE KEY`: unencrypted PKCS#8.
    Pkcs8,
    /// `BEGIN ENCRYPTED PRIVATE KEY`: PKCS#8 encrypted with a passphrase (3DES or AES).
    EncryptedPkcs8,
    /// `BEGIN RSA PRIVATE KEY`: PKCS#1.
    Pkcs1,
}

impl KeyFormat {
    /// The format's usual name: `PKCS#8`, `encrypted PKCS#8`, `PKCS#1`.
    pub fn name(self) -> &'static str {
        match self {
            KeyFormat::Pkcs8 => "PKCS#8",
            KeyFormat::EncryptedPkcs8 => "encrypted PKCS#8",
            KeyFormat::Pkcs1 => "PKCS#1",
        }
    }
}

impl KeyPair {
    /// Reads a PEM private key (PKCS#8, encrypted PKCS#8 with `passphrase`, or PKCS#1).
    ///
    /// Keys pasted into JSON with literal `\n` sequences are accepted too.
    pub fn from_pem(pem: &str, passphrase: Option<&str>) -> Result<(Self, KeyFormat), KeyError> {
        let pem = normalize_pem(pem);
        let passphrase = passphrase.filter(|p| !p.is_empty());
        let unreadable = |format| move |why| KeyError::Unreadable { format, why };
        if pem.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
            let passphrase = passphrase.ok_or(KeyError::NoPassphrase)?;
            let key = decrypt_pkcs8(&pem, passphrase)
                .and_then(|pkcs8| Self::from_pkcs8(pkcs8.as_bytes()))
                .map_err(unreadable(KeyFormat::EncryptedPkcs8))?;
            Ok((key, KeyFormat::EncryptedPkcs8))
        } else if pem.contains("-----BEGIN PRIVATE KEY-----") {
            let key = pem_body(&pem, "PRIVATE KEY")
                .and_then(|pkcs8| Self::from_pkcs8(pkcs8.as_bytes()))
                .map_err(unreadable(KeyFormat::Pkcs8))?;
            Ok((key, KeyFormat::Pkcs8))
        } else if pem.contains("-----BEGIN RSA PRIVATE KEY-----") {
            if pem.contains("Proc-Type: 4,ENCRYPTED") {
                return Err(KeyError::LegacyEncrypted);
            }
            let key = pem_body(&pem, "RSA PRIVATE KEY")
                .and_then(|pkcs1| Self::from_pkcs1(pkcs1.as_bytes()))
                .map_err(unreadable(KeyFormat::Pkcs1))?;
            Ok((key, KeyFormat::Pkcs1))
        } else {
            Err(KeyError::NotPem)
        }
    }

    /// Reads a DER PKCS#8 `PrivateKeyInfo` that must hold an RSA key.
    fn from_pkcs8(der: &[u8]) -> Result<Self, Unreadable> {
        let info = PrivateKeyInfoRef::try_from(der).map_err(|_| Unreadable::NotAKey)?;
        if info.algorithm.oid != RSA_ENCRYPTION {
            return Err(Unreadable::NotRsa);
        }
        Self::from_pkcs1(info.private_key.as_bytes())
    }

    /// Reads a DER PKCS#1 `RSAPrivateKey` (RFC 8017 appendix A.1.2).
    fn from_pkcs1(der: &[u8]) -> Result<Self, Unreadable> {
        let key = RsaKeyPair::from_der(der).map_err(|rejected| match rejected.description_() {
            "TooSmall" => Unreadable::TooShort,
            "TooLarge" => Unreadable::TooLong,
            _ => Unreadable::Malformed,
        })?;
        let public_der = key
            .public_key()
            .as_der()
            .map_err(|_| Unreadable::Malformed)?;
        let public_der = public_der.as_ref();
        let base64 = &base64::engine::general_purpose::STANDARD;
        Ok(KeyPair {
            signing_key: EncodingKey::from_rsa_der(der),
            fingerprint: format!("SHA256:{}", base64.encode(digest(&SHA256, public_der))),
            public_key: base64.encode(public_der),
        })
    }

    /// `SHA256:<base64>`: what Snowflake shows as `RSA_PUBLIC_KEY_FP` in `DESC USER`.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The public key (base64 DER, no PEM lines), as `ALTER USER ... SET RSA_PUBLIC_KEY` takes
    /// it. Public information.
    pub fn public_key(&self) -> &str {
        &self.public_key
    }
}

/// Why a private key cannot be used; the caller names its setting and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The key is encrypted (`BEGIN ENCRYPTED PRIVATE KEY`) and no passphrase was given.
    #[error("the private key is encrypted but no passphrase was given")]
    NoPassphrase,
    /// A PEM labelled `format` that does not read as an RSA key (for an encrypted key: does
    /// not decrypt with the passphrase, or holds no RSA key).
    #[error("not a readable {} RSA private key ({})", format.name(), why.describe())]
    Unreadable {
        /// The format the PEM's label names.
        format: KeyFormat,
        /// What is wrong with it.
        why: Unreadable,
    },
    /// `BEGIN RSA PRIVATE KEY` with `Proc-Type: 4,ENCRYPTED`, which is not supported.
    #[error("legacy encrypted PKCS#1 keys are not supported")]
    LegacyEncrypted,
    /// Not a PEM RSA private key of any supported label.
    #[error("not a PEM RSA private key")]
    NotPem,
    /// The key read but did not sign a JWT.
    #[error("cannot sign a JWT with this key: {0}")]
    Sign(String),
}

/// Why a PEM did not read as an RSA private key; [`Unreadable::describe`] words it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreadable {
    /// The PBES2 decryption failed.
    Decrypt,
    /// A PKCS#8 document of another algorithm (EC, Ed25519, ...).
    NotRsa,
    /// Labelled RSA but the key inside does not parse or is inconsistent.
    Malformed,
    /// Shorter than 2048 bits, the least Snowflake and aws-lc accept.
    TooShort,
    /// Longer than 8192 bits, the most aws-lc signs with.
    TooLong,
    /// Not PEM, or not the structure its label names.
    NotAKey,
}

impl Unreadable {
    /// The reason in a few words, for error details.
    pub fn describe(self) -> &'static str {
        match self {
            Unreadable::Decrypt => "wrong passphrase or unsupported cipher",
            Unreadable::NotRsa => "not an RSA key",
            Unreadable::Malformed => "the key is malformed",
            Unreadable::TooShort => "the key is shorter than 2048 bits; generate a 2048-bit key",
            Unreadable::TooLong => "the key is longer than 8192 bits; generate a 2048-bit key",
            Unreadable::NotAKey => "not an RSA private key",
        }
    }
}

/// The DER inside a PEM document whose label must be `label`.
fn pem_body(pem: &str, label: &str) -> Result<SecretDocument, Unreadable> {
    match SecretDocument::from_pem(pem) {
        Ok((found, der)) if found == label => Ok(der),
        _ => Err(Unreadable::NotAKey),
    }
}

/// Decrypts an `ENCRYPTED PRIVATE KEY` PEM (PBES2: PBKDF2 or scrypt, with 3DES or AES-CBC).
fn decrypt_pkcs8(pem: &str, passphrase: &str) -> Result<SecretDocument, Unreadable> {
    let encrypted = pem_body(pem, "ENCRYPTED PRIVATE KEY")?;
    EncryptedPrivateKeyInfoRef::try_from(encrypted.as_bytes())
        .map_err(|_| Unreadable::NotAKey)?
        .decrypt(passphrase)
        .map_err(|_| Unreadable::Decrypt)
}

/// Turns literal `\n` (as pasted into JSON by hand) back into newlines.
fn normalize_pem(pem: &str) -> String {
    pem.trim().replace("\\n", "\n").replace("\r\n", "\n")
}

/// The claims Snowflake expects in a key-pair JWT.
#[derive(serde::Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    iat: u64,
    exp: u64,
}

/// How requests authenticate.
pub enum Credentials {
    /// Key-pair authentication: a JWT per hour, signed locally.
    KeyPair {
        /// The signing key.
        key: KeyPair,
        /// Format the key was read from.
        format: KeyFormat,
    },
    /// A programmatic access token (PAT).
    Token(String),
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::KeyPair { key, format } => f
                .debug_struct("KeyPair")
                .field("fingerprint", &key.fingerprint)
                .field("format", format)
                .finish(),
            Credentials::Token(_) => f.write_str("ProgrammaticAccessToken(<redacted>)"),
        }
    }
}

/// A bearer token and its `X-Snowflake-Authorization-Token-Type`.
#[derive(Clone)]
pub struct Bearer {
    pub(crate) token: String,
    pub(crate) token_type: &'static str,
}

impl fmt::Debug for Bearer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Bearer({}, <redacted>)", self.token_type)
    }
}

/// Signs and caches JWTs (or hands out the PAT) for one account and user. Its `Debug` shows
/// no secret: the credentials and the cached bearer redact themselves.
#[derive(Debug)]
pub struct Authenticator {
    credentials: Credentials,
    issuer: String,
    subject: String,
    cached: Mutex<Option<(Bearer, SystemTime)>>,
}

impl Authenticator {
    /// Prepares claims for `ACCOUNT.USER` (both upper-cased, as Snowflake requires).
    pub fn new(jwt_account: &str, user: &str, credentials: Credentials) -> Self {
        let subject = format!(
            "{}.{}",
            jwt_account.to_ascii_uppercase(),
            user.to_ascii_uppercase()
        );
        let issuer = match &credentials {
            Credentials::KeyPair { key, .. } => format!("{subject}.{}", key.fingerprint),
            Credentials::Token(_) => subject.clone(),
        };
        Authenticator {
            credentials,
            issuer,
            subject,
            cached: Mutex::new(None),
        }
    }

    /// The credentials in use.
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// A bearer for the next request: the cached JWT unless it is about to expire.
    pub fn bearer(&self) -> Result<Bearer, KeyError> {
        match &self.credentials {
            Credentials::Token(token) => Ok(Bearer {
                token: token.clone(),
                token_type: "PROGRAMMATIC_ACCESS_TOKEN",
            }),
            Credentials::KeyPair { key, .. } => {
                let now = SystemTime::now();
                let mut cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
                if let Some((bearer, expires)) = cached.as_ref()
                    && expires.duration_since(now).unwrap_or_default() > JWT_RENEW_BEFORE
                {
                    return Ok(bearer.clone());
                }
                let (jwt, expires) = self.sign(key, now)?;
                let bearer = Bearer {
                    token: jwt,
                    token_type: "KEYPAIR_JWT",
                };
                *cached = Some((bearer.clone(), expires));
                Ok(bearer)
            }
        }
    }

    /// Drops the cached JWT so the next request signs a fresh one.
    pub fn invalidate(&self) {
        *self.cached.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    fn sign(&self, key: &KeyPair, now: SystemTime) -> Result<(String, SystemTime), KeyError> {
        let iat = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let claims = Claims {
            iss: &self.issuer,
            sub: &self.subject,
            iat,
            exp: iat + JWT_LIFETIME.as_secs(),
        };
        let jwt = jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &key.signing_key)
            .map_err(|e| KeyError::Sign(format!("{:?}", e.kind())))?;
        Ok((jwt, UNIX_EPOCH + Duration::from_secs(claims.exp)))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) use testkit::openssl::openssl;

    /// A fresh 2048-bit key as unencrypted PKCS#8 PEM.
    pub(crate) fn generate_pkcs8() -> String {
        testkit::openssl::rsa_key()
    }

    fn openssl_fingerprint(pem: &str) -> String {
        let der = openssl(
            &["pkey", "-pubout", "-outform", "DER"],
            Some(pem.as_bytes()),
        );
        let digest = openssl(&["dgst", "-sha256", "-binary"], Some(&der));
        format!(
            "SHA256:{}",
            base64::engine::general_purpose::STANDARD.encode(digest)
        )
    }

    fn decode_claims(jwt: &str) -> serde_json::Value {
        let mut parts = jwt.split('.');
        let header = parts.next().unwrap();
        let payload = parts.next().unwrap();
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header: serde_json::Value =
            serde_json::from_slice(&engine.decode(header).unwrap()).unwrap();
        assert_eq!(header["alg"], "RS256");
        serde_json::from_slice(&engine.decode(payload).unwrap()).unwrap()
    }

    #[test]
    fn every_key_format_reads_to_the_same_fingerprint_as_openssl() {
        let pkcs8 = generate_pkcs8();
        let expected = openssl_fingerprint(&pkcs8);
        let pass = "correct horse battery staple";
        let des3 = String::from_utf8(openssl(
            &[
                "pkcs8",
                "-topk8",
                "-v2",
                "des3",
                "-passout",
                &format!("pass:{pass}"),
            ],
            Some(pkcs8.as_bytes()),
        ))
        .unwrap();
        let aes = String::from_utf8(openssl(
            &[
                "pkcs8",
                "-topk8",
                "-v2",
                "aes-256-cbc",
                "-passout",
                &format!("pass:{pass}"),
            ],
            Some(pkcs8.as_bytes()),
        ))
        .unwrap();
        let pkcs1 =
            String::from_utf8(openssl(&["rsa", "-traditional"], Some(pkcs8.as_bytes()))).unwrap();
        assert!(des3.contains("BEGIN ENCRYPTED PRIVATE KEY"));
        assert!(pkcs1.contains("BEGIN RSA PRIVATE KEY"));

        let cases = [
            (&pkcs8, None, KeyFormat::Pkcs8),
            (&des3, Some(pass), KeyFormat::EncryptedPkcs8),
            (&aes, Some(pass), KeyFormat::EncryptedPkcs8),
            (&pkcs1, None, KeyFormat::Pkcs1),
        ];
        for (pem, passphrase, format) in cases {
            let (key, read_format) = KeyPair::from_pem(pem, passphrase).unwrap();
            assert_eq!(read_format, format);
            assert_eq!(key.fingerprint(), expected, "{format:?}");
        }
        let escaped = pkcs8.replace('\n', "\\n");
        assert_eq!(
            KeyPair::from_pem(&escaped, None).unwrap().0.fingerprint(),
            expected
        );
    }

    /// A throwaway 2048-bit test key; it is registered nowhere.
    const TEST_KEY: &str = include_str!("testdata/test_key_2048.p8");
    /// Its public key, from `openssl pkey -pubout`.
    const TEST_KEY_PUB: &str = include_str!("testdata/test_key_2048.pub");
    /// `openssl rsa -pubin -in test_key_2048.pub -outform DER | openssl dgst -sha256 -binary |
    /// openssl enc -base64` (docs/snowflake-setup.md's command), run once with OpenSSL 3.0.19.
    const TEST_KEY_FINGERPRINT: &str = "SHA256:QSYiWXQHhj6kXd8k/B+Fj/94txhqtnYSJnZqU+lZ95Y=";

    /// The test key re-encoded by openssl with `args` (e.g. `pkcs8 -topk8 -v2 des3 ...`).
    fn test_key_as(args: &[&str]) -> String {
        String::from_utf8(openssl(args, Some(TEST_KEY.as_bytes()))).unwrap()
    }

    #[test]
    fn known_key_in_every_format_has_the_fingerprint_openssl_printed() {
        let pass = "correct horse battery staple";
        let passout = format!("pass:{pass}");
        let cases = [
            (TEST_KEY.to_string(), None, KeyFormat::Pkcs8),
            (
                test_key_as(&["pkcs8", "-topk8", "-v2", "des3", "-passout", &passout]),
                Some(pass),
                KeyFormat::EncryptedPkcs8,
            ),
            (
                test_key_as(&[
                    "pkcs8",
                    "-topk8",
                    "-v2",
                    "aes-256-cbc",
                    "-passout",
                    &passout,
                ]),
                Some(pass),
                KeyFormat::EncryptedPkcs8,
            ),
            (
                test_key_as(&["rsa", "-traditional"]),
                None,
                KeyFormat::Pkcs1,
            ),
        ];
        let public_key: String = TEST_KEY_PUB
            .lines()
            .filter(|line| !line.starts_with("-----"))
            .collect();
        for (pem, passphrase, format) in cases {
            let (key, read_format) = KeyPair::from_pem(&pem, passphrase).unwrap();
            assert_eq!(read_format, format);
            assert_eq!(key.fingerprint(), TEST_KEY_FINGERPRINT, "{format:?}");
            assert_eq!(key.public_key(), public_key, "{format:?}");
        }
    }

    #[test]
    fn aes_key_with_wrong_passphrase_names_the_field_and_hides_the_passphrase() {
        let aes = test_key_as(&[
            "pkcs8",
            "-topk8",
            "-v2",
            "aes-256-cbc",
            "-passout",
            "pass:right",
        ]);
        let err = KeyPair::from_pem(&aes, Some("not-the-passphrase")).unwrap_err();
        assert_eq!(
            err,
            KeyError::Unreadable {
                format: KeyFormat::EncryptedPkcs8,
                why: Unreadable::Decrypt
            }
        );
        assert!(!format!("{err} {err:?}").contains("not-the-passphrase"));
    }

    #[test]
    fn pkcs8_key_of_another_algorithm_is_not_an_rsa_key() {
        let ec = String::from_utf8(openssl(
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ],
            None,
        ))
        .unwrap();
        assert!(ec.contains("BEGIN PRIVATE KEY"));
        let err = KeyPair::from_pem(&ec, None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "not a readable PKCS#8 RSA private key (not an RSA key)"
        );
    }

    #[test]
    fn damaged_keys_are_named_by_their_format() {
        let pkcs1 = test_key_as(&["rsa", "-traditional"]);
        let truncated = |pem: &str, label: &str| {
            let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
            format!(
                "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
                &body[..64]
            )
        };
        let err = KeyPair::from_pem(&truncated(&pkcs1, "RSA PRIVATE KEY"), None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "not a readable PKCS#1 RSA private key (not an RSA private key)"
        );
        let err = KeyPair::from_pem(&truncated(TEST_KEY, "PRIVATE KEY"), None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "not a readable PKCS#8 RSA private key (not an RSA private key)"
        );
        let legacy = "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-256-CBC,00\n\nAAAA\n-----END RSA PRIVATE KEY-----";
        let err = KeyPair::from_pem(legacy, None).unwrap_err();
        assert_eq!(err, KeyError::LegacyEncrypted);
    }

    #[test]
    fn key_shorter_than_2048_bits_is_refused_when_read() {
        let short = String::from_utf8(openssl(
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:1024",
            ],
            None,
        ))
        .unwrap();
        let err = KeyPair::from_pem(&short, None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "not a readable PKCS#8 RSA private key (the key is shorter than 2048 bits; generate a 2048-bit key)"
        );
    }

    #[test]
    fn encrypted_key_without_or_with_wrong_passphrase_names_the_field() {
        let pkcs8 = generate_pkcs8();
        let des3 = String::from_utf8(openssl(
            &["pkcs8", "-topk8", "-v2", "des3", "-passout", "pass:right"],
            Some(pkcs8.as_bytes()),
        ))
        .unwrap();
        let missing = KeyPair::from_pem(&des3, None).unwrap_err();
        assert_eq!(missing, KeyError::NoPassphrase);
        let wrong = KeyPair::from_pem(&des3, Some("wrong")).unwrap_err();
        assert_eq!(
            wrong,
            KeyError::Unreadable {
                format: KeyFormat::EncryptedPkcs8,
                why: Unreadable::Decrypt
            }
        );
        assert!(
            !wrong.to_string().contains("wrong\""),
            "passphrase must not be echoed"
        );
    }

    #[test]
    fn garbage_key_is_a_clear_error() {
        let err = KeyPair::from_pem("hunter2", None).unwrap_err();
        assert_eq!(err, KeyError::NotPem);
        assert!(!format!("{err} {err:?}").contains("hunter2"));
    }

    #[test]
    fn jwt_claims_follow_snowflake_rules_for_each_account_form() {
        let pkcs8 = generate_pkcs8();
        let (key, format) = KeyPair::from_pem(&pkcs8, None).unwrap();
        let fp = key.fingerprint().to_string();
        let auth = Authenticator::new(
            "XY12345",
            "tracklayer_svc",
            Credentials::KeyPair { key, format },
        );
        let bearer = auth.bearer().unwrap();
        assert_eq!(bearer.token_type, "KEYPAIR_JWT");
        let claims = decode_claims(&bearer.token);
        assert_eq!(claims["sub"], "XY12345.TRACKLAYER_SVC");
        assert_eq!(claims["iss"], format!("XY12345.TRACKLAYER_SVC.{fp}"));
        let (iat, exp) = (
            claims["iat"].as_u64().unwrap(),
            claims["exp"].as_u64().unwrap(),
        );
        assert_eq!(exp - iat, 59 * 60);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(iat <= now && now - iat < 60);

        for (identifier, expected) in [
            ("xy12345.eu-central-1", "XY12345"),
            ("xy12345.us-east-1.aws", "XY12345"),
            ("myorg-myaccount", "MYORG-MYACCOUNT"),
        ] {
            let account = super::super::Account::new(identifier, None).unwrap();
            let (key, format) = KeyPair::from_pem(&pkcs8, None).unwrap();
            let auth = Authenticator::new(
                &account.jwt_name,
                "svc",
                Credentials::KeyPair { key, format },
            );
            let claims = decode_claims(&auth.bearer().unwrap().token);
            assert_eq!(claims["sub"], format!("{expected}.SVC"));
            assert_eq!(claims["iss"], format!("{expected}.SVC.{fp}"));
        }
    }

    #[test]
    fn jwt_is_cached_until_invalidated() {
        let (key, format) = KeyPair::from_pem(&generate_pkcs8(), None).unwrap();
        let auth = Authenticator::new("A", "U", Credentials::KeyPair { key, format });
        let first = auth.bearer().unwrap().token;
        assert_eq!(auth.bearer().unwrap().token, first);
        auth.invalidate();
        let stale = Bearer {
            token: "stale".into(),
            token_type: "KEYPAIR_JWT",
        };
        *auth.cached.lock().unwrap() = Some((stale, SystemTime::now() + Duration::from_secs(60)));
        assert_ne!(
            auth.bearer().unwrap().token,
            "stale",
            "a token with <5 min left is renewed"
        );
    }

    #[test]
    fn debug_output_holds_no_secret_material() {
        let pkcs8 = generate_pkcs8();
        let (key, format) = KeyPair::from_pem(&pkcs8, None).unwrap();
        let auth = Authenticator::new("A", "U", Credentials::KeyPair { key, format });
        let jwt = auth.bearer().unwrap().token;
        let shown = format!("{auth:?} {:?}", auth.bearer().unwrap());
        let key_body: String = pkcs8.lines().nth(1).unwrap().to_string();
        assert!(!shown.contains(&key_body));
        assert!(!shown.contains(&jwt));
        assert!(!shown.contains(jwt.split('.').nth(2).unwrap()));

        let pat = Authenticator::new("A", "U", Credentials::Token("pat-secret-value".into()));
        let shown = format!("{pat:?} {:?}", pat.bearer().unwrap());
        assert!(!shown.contains("pat-secret-value"), "{shown}");
    }
}
