//! Test helpers that need `ratls` itself (with the `tpm` feature), for the swtpm-backed suites
//! in this crate's `tests/` and for the benchmark:
//!
//! - [`Swtpm`] (re-exported from `ratls-test`): a real software TPM per test;
//! - [`open_tpm`]: a [`TssTpm`] on it with the default AK handle;
//! - [`ImaSimulator`]: real `ima-ng` binary records appended to a file, PCR 10 extended in both
//!   banks exactly as the kernel does;
//! - [`simulate_boot`]: firmware-like measurements in PCRs 0–9 so quotes cover non-zero values;
//! - [`ak_spki_der`] / [`ak_pem`]: the AK as a SubjectPublicKeyInfo, for `tpm2_checkquote`;
//! - [`azure_vtpm()`]: NV index 0x01400001 on swtpm holding an HCL report, like Azure's vTPM.

#![forbid(unsafe_code)]

pub mod azure_vtpm;
pub mod keys;
pub mod machine;

pub use azure_vtpm::azure_vtpm;
pub use keys::{ak_pem, ak_spki_der};
pub use machine::{sim_ca, TestMachine};
pub use ratls::attest::ima_sim::{simulate_boot, simulate_boot_with_event_log, ImaSimulator};
pub use ratls::attest::tpm::{TssTpm, DEFAULT_AK_HANDLE};
pub use ratls_test::swtpm::Swtpm;

use ratls::attest::AttestError;

/// PCRs 0–10: the boot PCRs and IMA's PCR 10, as the project quotes them.
pub const BOOT_AND_IMA_PCRS: [u8; 11] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10];

/// Open the TPM of `swtpm` with the default AK handle.
pub fn open_tpm(swtpm: &Swtpm) -> Result<TssTpm, AttestError> {
    TssTpm::open(&swtpm.tcti(), DEFAULT_AK_HANDLE)
}
