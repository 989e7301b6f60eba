//! JWT bearer assertions: RS256 signature check against the connected app's certificate, and the
//! claims Salesforce requires (`iss`, `sub`, `aud`, `exp`).

use base64::Engine;
use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::pkcs8::DecodePublicKey;
use rsa::signature::Verifier;

/// The claims of a verified assertion.
#[derive(Debug, Clone, PartialEq)]
pub struct Claims {
    /// Issuer: the connected app's consumer key.
    pub iss: String,
    /// Subject: the username.
    pub sub: String,
    /// Audiences.
    pub aud: Vec<String>,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
}

fn b64(part: &str) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|_| "invalid assertion".to_string())
}

/// Reads the claims without checking the signature (to find the app whose certificate to use).
pub fn peek_claims(assertion: &str) -> Result<Claims, String> {
    let mut parts = assertion.split('.');
    let (Some(header), Some(payload), Some(_sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("invalid assertion".into());
    };
    let header: serde_json::Value =
        serde_json::from_slice(&b64(header)?).map_err(|_| "invalid assertion".to_string())?;
    if header.get("alg").and_then(|a| a.as_str()) != Some("RS256") {
        return Err("invalid assertion: only RS256 is supported".into());
    }
    let claims: serde_json::Value =
        serde_json::from_slice(&b64(payload)?).map_err(|_| "invalid assertion".to_string())?;
    let text = |k: &str| claims.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let iss = text("iss").ok_or("invalid assertion: iss is required")?;
    let sub = text("sub").ok_or("invalid assertion: sub is required")?;
    let aud = match claims.get("aud") {
        Some(serde_json::Value::String(s)) => vec![s.clone()],
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => return Err("invalid assertion: aud is required".into()),
    };
    // Salesforce's own example and simple-salesforce send `exp` as a string of digits.
    let exp = match claims.get("exp") {
        Some(serde_json::Value::Number(n)) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    }
    .ok_or("invalid assertion: exp is required")?;
    Ok(Claims { iss, sub, aud, exp })
}

fn public_key(pem_text: &str) -> Result<rsa::RsaPublicKey, String> {
    if pem_text.contains("BEGIN PUBLIC KEY") {
        return rsa::RsaPublicKey::from_public_key_pem(pem_text)
            .map_err(|e| format!("the app's public key is unreadable: {e}"));
    }
    if pem_text.contains("BEGIN RSA PUBLIC KEY") {
        return rsa::RsaPublicKey::from_pkcs1_pem(pem_text)
            .map_err(|e| format!("the app's public key is unreadable: {e}"));
    }
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem_text.as_bytes())
        .map_err(|e| format!("the app's certificate is unreadable: {e}"))?;
    let cert = pem
        .parse_x509()
        .map_err(|e| format!("the app's certificate is unreadable: {e}"))?;
    let spki = cert.public_key();
    rsa::RsaPublicKey::from_pkcs1_der(&spki.subject_public_key.data)
        .map_err(|e| format!("the app's certificate has no RSA key: {e}"))
}

/// Verifies the RS256 signature against `cert_pem` (an X.509 certificate or an RSA public key)
/// and checks expiry with `skew_secs` of tolerance. Audience is checked by the caller.
pub fn verify(
    assertion: &str,
    cert_pem: &str,
    now_secs: i64,
    skew_secs: i64,
) -> Result<Claims, String> {
    let claims = peek_claims(assertion)?;
    let (signed, sig) = assertion.rsplit_once('.').ok_or("invalid assertion")?;
    let key = public_key(cert_pem)?;
    let verifier = rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(key);
    let sig = rsa::pkcs1v15::Signature::try_from(b64(sig)?.as_slice())
        .map_err(|_| "invalid assertion".to_string())?;
    verifier
        .verify(signed.as_bytes(), &sig)
        .map_err(|_| "invalid assertion: signature does not match".to_string())?;
    if claims.exp + skew_secs < now_secs {
        return Err("expired assertion".into());
    }
    if claims.exp > now_secs + 24 * 3600 {
        return Err("invalid assertion: exp is too far in the future".into());
    }
    Ok(claims)
}
