//! Password and secret hashing with Argon2id.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

/// Hashes a password (Argon2id, default parameters: 19 MiB, 2 passes). CPU-heavy: call it from a
/// blocking context.
pub fn hash_password(password: &str) -> String {
    use rand::RngCore;
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).expect("16 bytes is a valid salt");
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 with default parameters cannot fail")
        .to_string()
}

/// Checks a password against a stored hash. CPU-heavy: call it from a blocking context.
pub fn verify_password(password: &str, hash: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let h = hash_password("s3cret&<pass>");
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("s3cret&<pass>", &h));
        assert!(!verify_password("s3cret&<pass", &h));
        assert!(!verify_password("x", "not a hash"));
    }
}
