//! # ratls: verify confidential VMs from the bytes their hardware produced
//!
//! This crate is the verification core of the attested-VM toolkit. It parses untrusted evidence
//! with bounds-checked code that never panics, and verifies it step by step, returning a
//! [`Verdict`] whose every [`Check`] names the step, the value it expected and the value that was
//! presented:
//!
//! - [`snp`]: AMD SEV-SNP attestation reports (v2, v3, v5), the VCEK/VLEK → ASK/ASVK → ARK chain
//!   with the Milan, Genoa and Turin ARKs pinned, the report signature, TCB and chip-id binding,
//!   and the guest policy (debug, VMPL, minimum TCB, measurements);
//! - [`tdx`]: Intel TDX quotes v4 and v5 (TD 1.0 and TD 1.5 bodies), verified against Intel PCS
//!   collateral given as input, with the TCB status evaluated;
//! - [`tpm`]: TPM 2.0 quotes (`TPMS_ATTEST`, `TPMT_SIGNATURE`, `TPMT_PUBLIC`);
//! - [`azure`]: Azure confidential VMs: the HCL report (SEV-SNP or TDX report whose report data
//!   hashes the paravisor's runtime data) and the vTPM attestation key it vouches for;
//! - [`ima`]: Linux IMA measurement logs (binary and ASCII; templates `ima`, `ima-ng`, `ima-sig`,
//!   `ima-buf`), replayed per PCR bank and matched against a quoted PCR 10.
//!
//! - [`tls`]: RA-TLS on rustls. Certificates carrying an evidence bundle bound to their key
//!   (certificate mode, verified during the handshake with cached verdicts, rotated in the
//!   background), and a post-handshake exchange bound to the session's TLS exporter (fresh mode).
//!   `docs/threat-model.md` says what each mode guarantees.
//!
//! Connecting to an attested server and reading its verdict (the whole server side, runnable, is
//! `examples/attested_pair.rs`: `cargo run -p ratls --features sim,issue --example attested_pair`):
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use ratls::tls::{AttestationPolicy, AttestedServerVerifier, Mode};
//!
//! let policy = ratls::Policy::from_json(&std::fs::read_to_string("policy.json")?)?;
//! let verifier = Arc::new(AttestedServerVerifier::new(
//!     AttestationPolicy::for_server(policy),
//!     Mode::Certificate,
//! ));
//! let config = ratls::tls::client_config(verifier.clone(), None, Vec::new())?;
//! let name = rustls::pki_types::ServerName::try_from("vm.example")?;
//! let mut conn = rustls::ClientConnection::new(Arc::new(config), name)?;
//! let mut tcp = std::net::TcpStream::connect("vm.example:443")?;
//! let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
//! std::io::Write::write_all(&mut tls, b"GET / HTTP/1.0\r\n\r\n")?; // handshake + evidence check
//! let verdict = ratls::tls::peer_verdict(&conn, &verifier).ok_or("not verified")?;
//! println!("{verdict}");
//! # Ok(()) }
//! ```
//!
//! The default features are pure Rust: no TPM library and no OpenSSL. All cryptography goes
//! through `ring`, the same provider the TLS stack uses.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let report = std::fs::read("report.bin")?;
//! let vcek = std::fs::read("vcek.der")?;
//! let now = ratls::UnixTime::now();
//! let verdict = ratls::snp::verify_bytes(
//!     &report,
//!     &ratls::snp::CertInput { vcek: Some(vcek), ..Default::default() },
//!     &ratls::snp::SnpPolicy::default(),
//!     now,
//! );
//! println!("{}", verdict.outcome());
//! for check in verdict.failures() {
//!     println!("{check}");
//! }
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

pub mod attest;
pub mod audit;
pub mod azure;
pub mod binding;
pub mod bundle;
pub mod claims;
pub mod codec;
#[cfg(feature = "collateral")]
pub mod collateral;
#[cfg(feature = "log")]
pub mod diag;
pub mod digest;
pub mod ear;
pub mod eventlog;
pub mod foreign;
pub mod fsutil;
pub mod hexfmt;
pub mod ima;
pub mod merkle;
#[cfg(feature = "tokio")]
pub mod net;
pub mod pki;
pub mod policy;
pub mod snapshot;
pub mod snp;
pub mod summary;
pub mod tdx;
pub mod time;
pub mod tls;
pub mod tpm;
pub mod verdict;

pub use crate::claims::Claims;
pub use crate::codec::{ParseError, Reader};
pub use crate::policy::Policy;
pub use crate::time::UnixTime;
pub use crate::verdict::{Check, Outcome, Platform, Step, Verdict};
