//! Verdicts: what was checked, what was expected, what was presented.
//!
//! A [`Verdict`] is an ordered list of named [`Check`]s plus the claims read from the evidence.
//! It is *trusted* only when it holds at least one check and every check passed: the verifiers
//! fail closed, so a step that could not run is recorded as a failed check, never omitted.

use core::fmt;

use serde::Serialize;

use crate::codec::ParseError;

pub use crate::claims::Claims;

mod step;
pub use self::step::{Step, StepLayer};

/// The kind of evidence a verdict is about, and the TEE an attester speaks for (the attester
/// side's `attest::TeeKind` is this type): one enum for one idea.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[non_exhaustive]
pub enum Platform {
    /// An Azure CVM on SEV-SNP: HCL report (+ vTPM quote).
    #[serde(rename = "azure-snp")]
    AzureSnp,
    /// An Azure CVM on TDX: HCL report, TDX quote (+ vTPM quote).
    #[serde(rename = "azure-tdx")]
    AzureTdx,
    #[serde(rename = "ima")]
    Ima,
    #[serde(rename = "sev-snp")]
    SevSnp,
    /// Intel SGX (read from other projects' certificates; not verified by this crate).
    #[serde(rename = "sgx")]
    Sgx,
    /// The simulated TEE (an SEV-SNP look-alike signed by a local CA). Attesters report it as
    /// such; a verdict on its evidence keeps the platform it imitates ([`Platform::SevSnp`])
    /// and says SIMULATED through [`Verdict::simulated`].
    #[serde(rename = "sim")]
    Simulated,
    #[serde(rename = "tdx")]
    Tdx,
    #[serde(rename = "tpm")]
    Tpm,
    /// Evidence whose platform could not be told (it did not parse, or none was found).
    #[serde(rename = "unknown")]
    Unknown,
}

impl Platform {
    /// The platforms a TEE attester can be configured with, by the names `tee = ...` accepts.
    pub const TEES: [Self; 5] = [
        Self::AzureSnp,
        Self::AzureTdx,
        Self::SevSnp,
        Self::Simulated,
        Self::Tdx,
    ];

    /// The name printed and serialized (`sev-snp`, `azure-tdx`, `sim`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::AzureSnp => "azure-snp",
            Self::AzureTdx => "azure-tdx",
            Self::Ima => "ima",
            Self::SevSnp => "sev-snp",
            Self::Sgx => "sgx",
            Self::Simulated => "sim",
            Self::Tdx => "tdx",
            Self::Tpm => "tpm",
            Self::Unknown => "unknown",
        }
    }

    /// The TEE named `s` (one of [`Platform::TEES`]): how attester configuration reads `tee`.
    pub fn from_tee_name(s: &str) -> Result<Self, String> {
        Self::TEES
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                format!("unknown TEE {s:?} (expected sev-snp, tdx, azure-snp, azure-tdx or sim)")
            })
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The overall result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Outcome {
    Rejected,
    Trusted,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Rejected => "rejected",
            Self::Trusted => "trusted",
        })
    }
}

/// One named verification step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// The step, printed as its dotted name, e.g. `tee.signature`, `tpm.pcr_digest`, `ima.replay`.
    pub step: Step,
    pub ok: bool,
    pub expected: String,
    pub presented: String,
    /// Free text: why it failed, or what was skipped and why.
    pub detail: String,
}

impl Check {
    /// A passed step.
    pub fn pass(step: Step, expected: impl Into<String>, presented: impl Into<String>) -> Self {
        Self {
            step,
            ok: true,
            expected: expected.into(),
            presented: presented.into(),
            detail: String::new(),
        }
    }

    /// A failed step.
    pub fn fail(
        step: Step,
        expected: impl Into<String>,
        presented: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            step,
            ok: false,
            expected: expected.into(),
            presented: presented.into(),
            detail: detail.into(),
        }
    }

    /// Passed when `ok`, failed otherwise.
    pub fn expect(
        step: Step,
        ok: bool,
        expected: impl Into<String>,
        presented: impl Into<String>,
    ) -> Self {
        Self {
            step,
            ok,
            expected: expected.into(),
            presented: presented.into(),
            detail: String::new(),
        }
    }

    /// Compare two values and record both.
    pub fn equal<T: PartialEq + fmt::Display + ?Sized>(
        step: Step,
        expected: &T,
        presented: &T,
    ) -> Self {
        Self::expect(
            step,
            expected == presented,
            expected.to_string(),
            presented.to_string(),
        )
    }

    /// Attach free text.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = detail.into();
        self
    }

    /// A failed parse step for untrusted input.
    pub fn parse_failure(step: Step, error: &ParseError) -> Self {
        Self::fail(
            step,
            "well-formed evidence",
            "malformed evidence",
            error.to_string(),
        )
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mark = if self.ok { "ok  " } else { "FAIL" };
        write!(f, "{mark} {}", self.step)?;
        if !self.ok || !self.expected.is_empty() {
            write!(
                f,
                ": expected {}, presented {}",
                self.expected, self.presented
            )?;
        }
        if !self.detail.is_empty() {
            write!(f, " ({})", self.detail)?;
        }
        Ok(())
    }
}

/// The result of verifying one piece of evidence.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    verdict: Outcome,
    pub platform: Platform,
    /// True when the evidence came from the simulated TEE; such a verdict is never production
    /// trust, and its display says SIMULATED.
    pub simulated: bool,
    pub checks: Vec<Check>,
    pub claims: Claims,
}

impl Verdict {
    /// An empty verdict; it is rejected until checks are added and all pass.
    pub fn new(platform: Platform) -> Self {
        Self {
            verdict: Outcome::Rejected,
            platform,
            simulated: false,
            checks: Vec::new(),
            claims: Claims::None {},
        }
    }

    /// Record a step.
    pub fn push(&mut self, check: Check) {
        self.checks.push(check);
        self.verdict = self.compute_outcome();
    }

    /// Record several steps.
    pub fn extend(&mut self, checks: impl IntoIterator<Item = Check>) {
        self.checks.extend(checks);
        self.verdict = self.compute_outcome();
    }

    /// Trusted only when there is at least one check and all passed.
    pub fn outcome(&self) -> Outcome {
        self.verdict
    }

    pub fn is_trusted(&self) -> bool {
        self.verdict == Outcome::Trusted
    }

    /// The failed checks, in order.
    pub fn failures(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| !c.ok)
    }

    /// The first failed check, the one to quote in a one-line refusal.
    pub fn first_failure(&self) -> Option<&Check> {
        self.failures().next()
    }

    /// The check recorded for `step`, if any.
    pub fn check<S: Copy>(&self, step: S) -> Option<&Check>
    where
        Step: PartialEq<S>,
    {
        self.checks
            .iter()
            .find(|c| c.step == step)
    }

    /// Whether `step` was recorded and passed.
    pub fn passed<S: Copy>(&self, step: S) -> bool
    where
        Step: PartialEq<S>,
    {
        self.check(step).is_some_and(|c| c.ok)
    }

    fn compute_outcome(&self) -> Outcome {
        if !self.checks.is_empty() && self.checks.iter().all(|c| c.ok) {
            Outcome::Trusted
        } else {
            Outcome::Rejected
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sim = if self.simulated { " SIMULATED" } else { "" };
        writeln!(f, "{}: {}{sim}", self.platform, self.verdict)?;
        for check in &self.checks {
            writeln!(f, "  {check}")?;
        }
        Ok(())
    }
}
