//! The simulated attester: SEV-SNP reports (version 3, Genoa) signed by the simulated VCEK.

use std::sync::Arc;

use ring::rand::{SecureRandom, SystemRandom};
use serde_bytes::ByteBuf;

use super::{backend, SimCa};
use crate::attest::{AttestError, TeeAttester, TeeKind};
use crate::binding::ReportData;
use crate::bundle::TeeEvidence;
use crate::digest::HashAlg;
use crate::snp::{REPORT_LEN, SIGNED_LEN};

/// Report format version: 3 carries the CPUID family/model/stepping.
const VERSION: u32 = 3;
/// SIGNATURE_ALGO 1: ECDSA P-384 with SHA-384.
const ECDSA_P384_SHA384: u32 = 1;
/// PLATFORM_INFO: SMT enabled (bit 0), ECC memory (bit 2), alias check complete (bit 5).
const PLATFORM_INFO: u64 = 0x25;
/// CPUID family 0x19, model 0x11, stepping 1: Genoa B1.
const CPUID: [u8; 3] = [0x19, 0x11, 0x01];
/// Firmware 1.55 build 40, as the report stores it: build, minor, major, reserved.
const FIRMWARE: [u8; 4] = [40, 55, 1, 0];

/// The simulated SEV-SNP attester.
///
/// Each instance is one simulated guest: its REPORT_ID is random, drawn once, and stays the
/// same for every report, as firmware does for a running guest. The measurement defaults to
/// [`default_measurement`](Self::default_measurement), stable across runs; host data, ID key
/// digest, guest SVN, family and image ids are zero unless configured.
#[derive(Debug)]
pub struct SimTee {
    ca: Arc<SimCa>,
    rng: SystemRandom,
    report_id: [u8; 32],
    policy: u64,
    vmpl: u32,
    guest_svn: u32,
    measurement: [u8; 48],
    host_data: [u8; 32],
    id_key_digest: [u8; 48],
    family_id: [u8; 16],
    image_id: [u8; 16],
    latency: Option<std::time::Duration>,
}

impl SimTee {
    /// The default guest policy: ABI 0.0, SMT allowed (bit 16), reserved bit 17 set, debug,
    /// migration agent and single-socket off.
    pub const DEFAULT_POLICY: u64 = 0x30000;
    /// Hashed (SHA-384) into the default measurement.
    pub const MEASUREMENT_LABEL: &'static str = "cosmian-vm simulated SEV-SNP guest v1";
    /// The guest policy bit that allows debugging (for negative tests).
    pub const POLICY_DEBUG: u64 = 1 << 19;

    pub fn new(ca: Arc<SimCa>) -> Result<Self, AttestError> {
        let rng = SystemRandom::new();
        let mut report_id = [0u8; 32];
        rng.fill(&mut report_id)
            .map_err(|e| backend("simulated report id", e))?;
        Ok(Self {
            ca,
            rng,
            report_id,
            policy: Self::DEFAULT_POLICY,
            vmpl: 0,
            guest_svn: 0,
            measurement: Self::default_measurement(),
            host_data: [0; 32],
            id_key_digest: [0; 48],
            family_id: [0; 16],
            image_id: [0; 16],
            latency: None,
        })
    }

    /// SHA-384 of [`MEASUREMENT_LABEL`](Self::MEASUREMENT_LABEL).
    pub fn default_measurement() -> [u8; 48] {
        let mut out = [0u8; 48];
        for (dst, src) in out
            .iter_mut()
            .zip(HashAlg::Sha384.digest(Self::MEASUREMENT_LABEL.as_bytes()))
        {
            *dst = src;
        }
        out
    }

    pub fn with_measurement(mut self, measurement: [u8; 48]) -> Self {
        self.measurement = measurement;
        self
    }

    pub fn with_host_data(mut self, host_data: [u8; 32]) -> Self {
        self.host_data = host_data;
        self
    }

    pub fn with_id_key_digest(mut self, id_key_digest: [u8; 48]) -> Self {
        self.id_key_digest = id_key_digest;
        self
    }

    /// The whole guest policy, e.g. `SimTee::DEFAULT_POLICY | SimTee::POLICY_DEBUG`.
    pub fn with_policy(mut self, policy: u64) -> Self {
        self.policy = policy;
        self
    }

    /// The VMPL the reports say they were requested at.
    pub fn with_vmpl(mut self, vmpl: u32) -> Self {
        self.vmpl = vmpl;
        self
    }

    pub fn with_guest_svn(mut self, guest_svn: u32) -> Self {
        self.guest_svn = guest_svn;
        self
    }

    pub fn with_family_id(mut self, family_id: [u8; 16]) -> Self {
        self.family_id = family_id;
        self
    }

    pub fn with_image_id(mut self, image_id: [u8; 16]) -> Self {
        self.image_id = image_id;
        self
    }

    /// Take `latency` per report, as hardware does (an SEV-SNP guest request takes tens of
    /// milliseconds, a TDX quote through the QGS about 40 ms, one at a time): for tests and
    /// benchmarks of what waits on the TEE (batching, rotation), never for speed.
    pub fn with_latency(mut self, latency: std::time::Duration) -> Self {
        self.latency = Some(latency);
        self
    }

    /// The chain this attester signs with.
    pub fn ca(&self) -> &Arc<SimCa> {
        &self.ca
    }

    /// This guest's REPORT_ID.
    pub fn report_id(&self) -> &[u8; 32] {
        &self.report_id
    }

    /// A signed 1184-byte report carrying `report_data`.
    pub fn report(&self, report_data: &ReportData) -> Result<Vec<u8>, AttestError> {
        let tcb = self.ca.tcb().raw().to_le_bytes();
        let mut r = Vec::with_capacity(REPORT_LEN);
        r.extend_from_slice(&VERSION.to_le_bytes()); // 0x000
        r.extend_from_slice(&self.guest_svn.to_le_bytes()); // 0x004
        r.extend_from_slice(&self.policy.to_le_bytes()); // 0x008
        r.extend_from_slice(&self.family_id); // 0x010
        r.extend_from_slice(&self.image_id); // 0x020
        r.extend_from_slice(&self.vmpl.to_le_bytes()); // 0x030
        r.extend_from_slice(&ECDSA_P384_SHA384.to_le_bytes()); // 0x034
        r.extend_from_slice(&tcb); // 0x038 current_tcb
        r.extend_from_slice(&PLATFORM_INFO.to_le_bytes()); // 0x040
                                                           // 0x048 flags: AUTHOR_KEY_EN 0, MASK_CHIP_KEY 0, SIGNING_KEY 0 (VCEK); 0x04C reserved.
        r.extend_from_slice(&[0; 8]);
        r.extend_from_slice(report_data.as_bytes()); // 0x050
        r.extend_from_slice(&self.measurement); // 0x090
        r.extend_from_slice(&self.host_data); // 0x0C0
        r.extend_from_slice(&self.id_key_digest); // 0x0E0
        r.extend_from_slice(&[0; 48]); // 0x110 author_key_digest (no author key)
        r.extend_from_slice(&self.report_id); // 0x140
        r.extend_from_slice(&[0xff; 32]); // 0x160 report_id_ma: no migration agent
        r.extend_from_slice(&tcb); // 0x180 reported_tcb
        r.extend_from_slice(&CPUID); // 0x188
        r.resize(0x1A0, 0); // reserved
        r.extend_from_slice(self.ca.chip_id()); // 0x1A0
        r.extend_from_slice(&tcb); // 0x1E0 committed_tcb
        r.extend_from_slice(&FIRMWARE); // 0x1E8 current version
        r.extend_from_slice(&FIRMWARE); // 0x1EC committed version
        r.extend_from_slice(&tcb); // 0x1F0 launch_tcb
        r.resize(SIGNED_LEN, 0); // 0x1F8 reserved (mitigation vectors from version 5 on)
        if r.len() != SIGNED_LEN {
            return Err(backend(
                "simulated report",
                format!("signed part is {} bytes, not {SIGNED_LEN}", r.len()),
            ));
        }
        let signature = self.ca.sign(&self.rng, &r)?;
        let (sig_r, sig_s) = signature.split_at(48);
        for component in [sig_r, sig_s] {
            // 0x2A0 r, 0x2E8 s: little-endian, zero-extended to 72 bytes.
            r.extend(component.iter().rev());
            r.extend_from_slice(&[0; 24]);
        }
        r.resize(REPORT_LEN, 0); // 0x330 reserved
        Ok(r)
    }
}

impl TeeAttester for SimTee {
    fn kind(&self) -> TeeKind {
        TeeKind::Simulated
    }

    fn attest(&self, report_data: &ReportData) -> Result<TeeEvidence, AttestError> {
        if let Some(latency) = self.latency {
            std::thread::sleep(latency);
        }
        Ok(TeeEvidence::Sim {
            report: ByteBuf::from(self.report(report_data)?),
            vcek: ByteBuf::from(self.ca.vcek_der()),
            chain: ByteBuf::from(self.ca.chain_pem().into_bytes()),
        })
    }
}
