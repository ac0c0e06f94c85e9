//! RSASSA-PSS verification that recovers the salt length from the signature (RFC 8017 8.1.2
//! and EMSA-PSS-VERIFY, 9.1.2).
//!
//! ring verifies PSS only with salt length = hash length; genuine TPMs sign with the largest
//! salt that fits (emLen - hLen - 2) unless in FIPS mode (hash length), so their quotes would
//! be refused. The public operation `s^e mod n` runs on `num-bigint`; every hash, MGF1
//! included, is ring's. Inputs are public: no constant-time comparison is needed, but nothing
//! here panics or indexes out of bounds on hostile input.

use num_bigint::BigUint;

use crate::digest::HashAlg;

/// Smallest and largest RSA modulus accepted, in bits (ring's bounds for RSA verification).
pub const MIN_MODULUS_BITS: usize = 2048;
pub const MAX_MODULUS_BITS: usize = 8192;

/// Why a PSS signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PssError {
    #[error("RSA key of {bits} bits: only {MIN_MODULUS_BITS}- to {MAX_MODULUS_BITS}-bit keys are verified")]
    ModulusSize { bits: usize },
    #[error("RSA public exponent {e}: must be odd and at least 3")]
    Exponent { e: String },
    #[error("signature is {got} bytes, the modulus {want} bytes")]
    SignatureLength { got: usize, want: usize },
    #[error("signature representative is not smaller than the modulus")]
    SignatureTooLarge,
    #[error("{hash} cannot be used for RSASSA-PSS here (SHA-256, SHA-384 or SHA-512)")]
    Hash { hash: &'static str },
    #[error("encoded message inconsistent: {0}")]
    Inconsistent(&'static str),
    #[error("the hash in the encoded message does not match: wrong message, key or hash")]
    HashMismatch,
}

/// Verify an RSASSA-PSS signature `sig` of `message` under (`n`, `e`) (big-endian, leading
/// zeros allowed) with `hash` for the message, MGF1 and H. Any salt length is accepted; it is
/// returned.
pub fn verify(
    n: &[u8],
    e: &[u8],
    hash: HashAlg,
    message: &[u8],
    sig: &[u8],
) -> Result<usize, PssError> {
    if hash == HashAlg::Sha1 {
        return Err(PssError::Hash { hash: hash.name() });
    }
    let n = BigUint::from_bytes_be(n);
    let mod_bits = usize::try_from(n.bits()).unwrap_or(usize::MAX);
    if !(MIN_MODULUS_BITS..=MAX_MODULUS_BITS).contains(&mod_bits) {
        return Err(PssError::ModulusSize { bits: mod_bits });
    }
    let e = BigUint::from_bytes_be(e);
    if e < BigUint::from(3u32) || !e.bit(0) || e >= n {
        return Err(PssError::Exponent { e: e.to_string() });
    }
    // RSASSA-PSS-VERIFY step 1: the signature is exactly k bytes.
    let k = mod_bits.div_ceil(8);
    if sig.len() != k {
        return Err(PssError::SignatureLength {
            got: sig.len(),
            want: k,
        });
    }
    // RSAVP1: s < n, m = s^e mod n.
    let s = BigUint::from_bytes_be(sig);
    if s >= n {
        return Err(PssError::SignatureTooLarge);
    }
    let m = s.modpow(&e, &n);
    // I2OSP(m, emLen) with emBits = modBits - 1.
    let em_bits = mod_bits - 1;
    let em_len = em_bits.div_ceil(8);
    let m_bytes = m.to_bytes_be();
    if m_bytes.len() > em_len {
        return Err(PssError::Inconsistent(
            "the signature representative does not fit emLen bytes",
        ));
    }
    let mut em = vec![0u8; em_len - m_bytes.len()];
    em.extend_from_slice(&m_bytes);
    emsa_pss_verify(hash, message, &em, em_bits)
}

/// EMSA-PSS-VERIFY (RFC 8017 9.1.2) with the salt length taken from the encoded message.
fn emsa_pss_verify(
    hash: HashAlg,
    message: &[u8],
    em: &[u8],
    em_bits: usize,
) -> Result<usize, PssError> {
    let h_len = hash.digest_len();
    let em_len = em.len();
    // Step 3 with sLen >= 0.
    if em_len < h_len + 2 {
        return Err(PssError::Inconsistent("emLen < hLen + 2"));
    }
    // Step 4: the trailer.
    if em.last() != Some(&0xbc) {
        return Err(PssError::Inconsistent("the last byte is not 0xbc"));
    }
    // Step 5.
    let db_len = em_len - h_len - 1;
    let (masked_db, rest) = em.split_at(db_len);
    let h = rest
        .get(..h_len)
        .ok_or(PssError::Inconsistent("no room for H"))?;
    // Step 6: the leftmost 8*emLen - emBits bits of maskedDB are zero.
    let unused_bits = (8 * em_len)
        .checked_sub(em_bits)
        .filter(|u| *u < 8)
        .ok_or(PssError::Inconsistent("emBits does not match emLen"))?;
    let top_mask: u8 = if unused_bits == 0 {
        0
    } else {
        0xffu8 << (8 - unused_bits)
    };
    let first = masked_db
        .first()
        .copied()
        .ok_or(PssError::Inconsistent("empty DB"))?;
    if first & top_mask != 0 {
        return Err(PssError::Inconsistent(
            "the leftmost bits of the encoded message are not zero",
        ));
    }
    // Steps 7-9: DB = maskedDB xor MGF1(H, emLen - hLen - 1), leftmost bits cleared.
    let mask = mgf1(hash, h, db_len);
    let mut db: Vec<u8> = masked_db
        .iter()
        .zip(&mask)
        .map(|(a, b)| a ^ b)
        .collect();
    if let Some(b) = db.first_mut() {
        *b &= !top_mask;
    }
    // Step 10: DB = PS (zeros) || 0x01 || salt.
    let separator = db
        .iter()
        .position(|&b| b != 0)
        .ok_or(PssError::Inconsistent("no 0x01 separator (DB is all zero)"))?;
    if db.get(separator) != Some(&0x01) {
        return Err(PssError::Inconsistent(
            "the first non-zero byte of DB is not the 0x01 separator",
        ));
    }
    // Step 11.
    let salt = db
        .get(separator + 1..)
        .unwrap_or_default();
    // Steps 12-14: H' = Hash(0x00*8 || mHash || salt) must equal H.
    let m_hash = hash.digest(message);
    let h2 = hash.digest_all([&[0u8; 8][..], &m_hash, salt]);
    if h2 != h {
        return Err(PssError::HashMismatch);
    }
    Ok(salt.len())
}

/// MGF1 (RFC 8017 B.2.1) with `hash`, `len` bytes.
fn mgf1(hash: HashAlg, seed: &[u8], len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 64);
    let mut counter: u32 = 0;
    while out.len() < len {
        out.extend(hash.digest_all([seed, &counter.to_be_bytes()[..]]));
        counter = counter.wrapping_add(1);
    }
    out.truncate(len);
    out
}

#[cfg(test)]
pub(super) mod tests {
    use std::sync::OnceLock;

    use ring::rand::{SecureRandom, SystemRandom};
    use rsa::sha2::{Sha256, Sha384};
    use rsa::traits::PublicKeyParts;
    use rsa::{PrivateKey, Pss};

    use super::*;

    /// ring's RNG for the `rsa` crate (tests only).
    struct Rng;

    impl rsa::rand_core::TryRng for Rng {
        type Error = core::convert::Infallible;

        fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
            let mut b = [0u8; 4];
            self.try_fill_bytes(&mut b)?;
            Ok(u32::from_le_bytes(b))
        }

        fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
            let mut b = [0u8; 8];
            self.try_fill_bytes(&mut b)?;
            Ok(u64::from_le_bytes(b))
        }

        fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
            SystemRandom::new().fill(dst).unwrap();
            Ok(())
        }
    }

    impl rsa::rand_core::TryCryptoRng for Rng {}

    pub(crate) fn key(bits: usize) -> &'static PrivateKey {
        static K2048: OnceLock<PrivateKey> = OnceLock::new();
        static K3072: OnceLock<PrivateKey> = OnceLock::new();
        let cell = if bits == 2048 { &K2048 } else { &K3072 };
        cell.get_or_init(|| PrivateKey::new(&mut Rng, bits).unwrap())
    }

    pub(crate) fn sign(key: &PrivateKey, hash: HashAlg, salt: usize, message: &[u8]) -> Vec<u8> {
        let digest = hash.digest(message);
        match hash {
            HashAlg::Sha256 => {
                key.sign_with_rng(&mut Rng, Pss::<Sha256>::new_with_salt(salt), &digest)
            }
            HashAlg::Sha384 => {
                key.sign_with_rng(&mut Rng, Pss::<Sha384>::new_with_salt(salt), &digest)
            }
            _ => unreachable!(),
        }
        .unwrap()
    }

    pub(crate) fn public(key: &PrivateKey) -> (Vec<u8>, Vec<u8>) {
        (key.n_bytes().to_vec(), key.e_bytes().to_vec())
    }

    const MESSAGE: &[u8] = b"TPMS_ATTEST bytes of a quote";

    #[test]
    fn every_salt_length_verifies() {
        for bits in [2048, 3072] {
            let key = key(bits);
            let (n, e) = public(key);
            let em_len = (bits - 1).div_ceil(8);
            for hash in [HashAlg::Sha256, HashAlg::Sha384] {
                let h_len = hash.digest_len();
                let max = em_len - h_len - 2;
                for salt in [0, 20, 32, h_len, max] {
                    let sig = sign(key, hash, salt, MESSAGE);
                    assert_eq!(
                        verify(&n, &e, hash, MESSAGE, &sig),
                        Ok(salt),
                        "{bits} bits, {hash:?}, salt {salt}"
                    );
                }
                // One more than the maximum does not fit: the rsa crate refuses to sign it.
                let digest = hash.digest(MESSAGE);
                let too_long = match hash {
                    HashAlg::Sha256 => {
                        key.sign_with_rng(&mut Rng, Pss::<Sha256>::new_with_salt(max + 1), &digest)
                    }
                    _ => {
                        key.sign_with_rng(&mut Rng, Pss::<Sha384>::new_with_salt(max + 1), &digest)
                    }
                };
                assert!(too_long.is_err());
            }
        }
    }

    #[test]
    fn wrong_message_hash_key_or_bits_fail() {
        let key = key(2048);
        let (n, e) = public(key);
        let sig = sign(key, HashAlg::Sha256, 222, MESSAGE);
        assert_eq!(verify(&n, &e, HashAlg::Sha256, MESSAGE, &sig), Ok(222));
        assert_eq!(
            verify(&n, &e, HashAlg::Sha256, b"another message", &sig),
            Err(PssError::HashMismatch)
        );
        // Wrong hash: H' and MGF1 differ, the encoding no longer decodes.
        assert!(verify(&n, &e, HashAlg::Sha384, MESSAGE, &sig).is_err());
        assert!(verify(&n, &e, HashAlg::Sha512, MESSAGE, &sig).is_err());
        assert!(matches!(
            verify(&n, &e, HashAlg::Sha1, MESSAGE, &sig),
            Err(PssError::Hash { .. })
        ));
        // Wrong key (another 3072-bit key, and a 2048-bit key of another size class).
        let (n3, e3) = public(self::key(3072));
        assert!(matches!(
            verify(&n3, &e3, HashAlg::Sha256, MESSAGE, &sig),
            Err(PssError::SignatureLength { .. })
        ));
        let other = PrivateKey::new(&mut Rng, 2048).unwrap();
        let (n2, e2) = public(&other);
        assert!(verify(&n2, &e2, HashAlg::Sha256, MESSAGE, &sig).is_err());
        // Every single flipped bit fails.
        for i in 0..sig.len() {
            for bit in [0x01, 0x80] {
                let mut bad = sig.clone();
                bad[i] ^= bit;
                assert!(
                    verify(&n, &e, HashAlg::Sha256, MESSAGE, &bad).is_err(),
                    "byte {i} bit {bit:#x}"
                );
            }
        }
    }

    #[test]
    fn key_and_signature_bounds() {
        let key = key(2048);
        let (n, e) = public(key);
        let sig = sign(key, HashAlg::Sha256, 32, MESSAGE);
        // s >= n.
        assert_eq!(
            verify(&n, &e, HashAlg::Sha256, MESSAGE, &n),
            Err(PssError::SignatureTooLarge)
        );
        assert_eq!(
            verify(&n, &e, HashAlg::Sha256, MESSAGE, &[0xff; 256]),
            Err(PssError::SignatureTooLarge)
        );
        // Wrong lengths.
        assert!(matches!(
            verify(&n, &e, HashAlg::Sha256, MESSAGE, &sig[1..]),
            Err(PssError::SignatureLength { .. })
        ));
        assert!(matches!(
            verify(
                &n,
                &e,
                HashAlg::Sha256,
                MESSAGE,
                &[sig.as_slice(), &[0]].concat()
            ),
            Err(PssError::SignatureLength { .. })
        ));
        // Exponents: even, 1, 0.
        for bad_e in [&[0x01, 0x00, 0x00][..], &[1], &[0], &[], &[2]] {
            assert!(
                matches!(
                    verify(&n, bad_e, HashAlg::Sha256, MESSAGE, &sig),
                    Err(PssError::Exponent { .. })
                ),
                "{bad_e:?}"
            );
        }
        // Modulus sizes.
        assert!(matches!(
            verify(&n[..128], &e, HashAlg::Sha256, MESSAGE, &sig[..128]),
            Err(PssError::ModulusSize { bits: 1024 })
        ));
        assert!(matches!(
            verify(&[0xff; 1025], &e, HashAlg::Sha256, MESSAGE, &sig),
            Err(PssError::ModulusSize { .. })
        ));
        assert!(matches!(
            verify(&[], &e, HashAlg::Sha256, MESSAGE, &[]),
            Err(PssError::ModulusSize { bits: 0 })
        ));
        // Leading zero bytes of n are not part of its size.
        let padded = [&[0u8, 0][..], &n].concat();
        assert_eq!(verify(&padded, &e, HashAlg::Sha256, MESSAGE, &sig), Ok(32));
    }

    /// Encoded messages built by hand: each structural rule of EMSA-PSS-VERIFY on its own.
    #[test]
    fn encoded_message_rules() {
        let hash = HashAlg::Sha256;
        let em_bits = 2047;
        let em_len = 256;
        let encode = |salt: &[u8], tweak: &dyn Fn(&mut Vec<u8>, &mut Vec<u8>)| {
            let m_hash = hash.digest(MESSAGE);
            let h = hash.digest_all([&[0u8; 8][..], &m_hash, salt]);
            let db_len = em_len - 32 - 1;
            let mut db = vec![0u8; db_len - salt.len() - 1];
            db.push(0x01);
            db.extend_from_slice(salt);
            let mut trailer = vec![0xbc];
            tweak(&mut db, &mut trailer);
            let mask = mgf1(hash, &h, db_len);
            let mut em: Vec<u8> = db
                .iter()
                .zip(&mask)
                .map(|(a, b)| a ^ b)
                .collect();
            em[0] &= 0x7f;
            em.extend_from_slice(&h);
            em.extend_from_slice(&trailer);
            em
        };
        let none = |_: &mut Vec<u8>, _: &mut Vec<u8>| {};
        assert_eq!(
            emsa_pss_verify(hash, MESSAGE, &encode(&[7; 40], &none), em_bits),
            Ok(40)
        );
        assert_eq!(
            emsa_pss_verify(hash, MESSAGE, &encode(&[], &none), em_bits),
            Ok(0)
        );
        // Trailer other than 0xbc.
        let bad = encode(&[7; 40], &|_, t| t[0] = 0xbd);
        assert_eq!(
            emsa_pss_verify(hash, MESSAGE, &bad, em_bits),
            Err(PssError::Inconsistent("the last byte is not 0xbc"))
        );
        // Top bit set in the encoded message.
        let mut top = encode(&[7; 40], &none);
        top[0] |= 0x80;
        assert!(matches!(
            emsa_pss_verify(hash, MESSAGE, &top, em_bits),
            Err(PssError::Inconsistent(_))
        ));
        // Separator 0x02 instead of 0x01, or missing (all-zero DB).
        let sep = encode(&[7; 40], &|db, _| {
            let i = db.len() - 41;
            db[i] = 0x02;
        });
        assert!(matches!(
            emsa_pss_verify(hash, MESSAGE, &sep, em_bits),
            Err(PssError::Inconsistent(_))
        ));
        let zero = encode(&[], &|db, _| db.iter_mut().for_each(|b| *b = 0));
        assert!(matches!(
            emsa_pss_verify(hash, MESSAGE, &zero, em_bits),
            Err(PssError::Inconsistent(_))
        ));
        // A non-zero byte in the padding: read as a separator, which it is not.
        let pad = encode(&[7; 40], &|db, _| db[3] = 0x05);
        assert!(emsa_pss_verify(hash, MESSAGE, &pad, em_bits).is_err());
        // Too short for the hash.
        assert!(emsa_pss_verify(hash, MESSAGE, &[0xbc; 10], 79).is_err());
        assert!(emsa_pss_verify(hash, MESSAGE, &[], 0).is_err());
    }

    /// Random bytes as signatures, keys and encoded messages: never a panic, never a pass.
    #[test]
    fn random_input_never_panics() {
        let key = key(2048);
        let (n, e) = public(key);
        let rng = SystemRandom::new();
        let mut buf = [0u8; 600];
        for round in 0..300 {
            rng.fill(&mut buf).unwrap();
            let len = usize::from(buf[0]) + usize::from(buf[1] & 1) * 256 % 300;
            let sig = &buf[2..2 + len.min(598)];
            assert!(
                verify(&n, &e, HashAlg::Sha256, MESSAGE, sig).is_err(),
                "{round}"
            );
            let mut full = buf[..256].to_vec();
            full[0] &= 0x7f;
            assert!(
                verify(&n, &e, HashAlg::Sha384, MESSAGE, &full).is_err(),
                "{round}"
            );
            // Encoded messages of any length with any emBits, consistent or not.
            let em_bits = usize::from(buf[3]) * 8 + usize::from(buf[4] % 9);
            let em_len = usize::from(buf[5]);
            assert!(emsa_pss_verify(HashAlg::Sha256, MESSAGE, &buf[..em_len], em_bits).is_err());
            let _ = verify(
                &buf[..256],
                &buf[256..259],
                HashAlg::Sha512,
                MESSAGE,
                &buf[300..556],
            );
        }
    }
}
