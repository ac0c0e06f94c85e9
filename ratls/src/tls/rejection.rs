//! A refusal by the RA-TLS verifiers: the whole verdict for the side that refused, one TLS
//! alert chosen by the failed step for the peer.
//!
//! rustls sends the peer the alert of the [`CertificateError`] a verifier returns, and hands the
//! same error to the application; only [`CertificateError::Other`] carries a payload, and its
//! alert is always `certificate_unknown`. So a refusal travels in two parts:
//!
//! - the error is `InvalidCertificate(`[`certificate_error`]`(step))`: an alert that says what
//!   went wrong (`bad_certificate`, `certificate_expired`, `access_denied`, ...), and nothing
//!   more (the verdict, with expected and presented values, stays with the side that refused);
//! - the verdict goes to a *rejection slot* that the code driving the handshake opens around it:
//!   [`catch_rejection`] around synchronous `process_new_packets` calls, [`CatchRejection`]
//!   around a `tokio-rustls` `connect` / `accept` future. [`AttestationRejected::from_rustls`]
//!   then pairs the handshake error with the verdict.
//!
//! Why this cannot attribute a refusal to another connection: rustls calls the verifier
//! synchronously inside `process_new_packets`, so the verifier runs inside the closure (or the
//! poll of the wrapped future) that drives that connection, on the same thread; the slot is a
//! thread-local open only for that call and restored when it returns (an inner slot hides an
//! outer one), and a refusal made while no slot is open is dropped. The slot is read only for
//! the exact error the verifier returned with it. One slot serves one connection (or the two
//! ends of one in-memory handshake: the first refusal ends it).

use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};
use std::cell::Cell;
use std::sync::Arc;

use rustls::CertificateError;

use crate::verdict::{Step, Verdict};

/// A refusal: the verdict whose first failed step caused it.
#[derive(Debug, Clone)]
pub struct AttestationRejected {
    pub verdict: Arc<Verdict>,
}

impl AttestationRejected {
    /// The refusal behind `error`, from the slot its handshake was driven in: `Some` only when
    /// `error` is the very error one of our verifiers returned for it.
    pub fn from_rustls(error: &rustls::Error, slot: &RejectionSlot) -> Option<Arc<Self>> {
        match (error, &slot.caught) {
            (rustls::Error::InvalidCertificate(e), Some((sent, rejected))) if e == sent => {
                Some(rejected.clone())
            }
            _ => None,
        }
    }

    /// [`from_rustls`](Self::from_rustls) for the `std::io::Error` a `tokio-rustls` handshake
    /// returns (the rustls error inside it).
    pub fn from_io(error: &std::io::Error, slot: &RejectionSlot) -> Option<Arc<Self>> {
        let inner = error
            .get_ref()?
            .downcast_ref::<rustls::Error>()?;
        Self::from_rustls(inner, slot)
    }

    /// The step that failed first.
    pub fn step(&self) -> Step {
        self.verdict
            .first_failure()
            .map_or(Step::VERDICT_EMPTY, |c| c.step)
    }

    /// The error a verifier returns for this refusal ([`certificate_error`] of its step), after
    /// leaving the refusal in the open slot, if any.
    pub(crate) fn into_rustls(self) -> rustls::Error {
        let sent = certificate_error(self.step());
        let _ = SLOT.try_with(|slot| {
            if let Some(mut open) = slot.take() {
                open.caught = Some((sent.clone(), Arc::new(self)));
                slot.set(Some(open));
            }
        });
        rustls::Error::InvalidCertificate(sent)
    }
}

impl fmt::Display for AttestationRejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.verdict.first_failure() {
            Some(c) => {
                write!(
                    f,
                    "attestation rejected at {}: expected {}, presented {}",
                    c.step, c.expected, c.presented
                )?;
                if !c.detail.is_empty() {
                    write!(f, " ({})", c.detail)?;
                }
            }
            None => f.write_str("attestation rejected: no check ran")?,
        }
        if self.verdict.simulated {
            f.write_str(" [SIMULATED]")?;
        }
        Ok(())
    }
}

impl std::error::Error for AttestationRejected {}

/// The certificate error, and so the TLS alert the peer receives, for a refusal at `step`.
///
/// | Failed step | Error | Alert |
/// |---|---|---|
/// | what does not parse or has the wrong format or size: `azure.parse`, `bundle.parse`, `cert.parse`, `cert.extension.{critical,format,size}`, `eventlog.parse`, `foreign.{certificate,extension,format}`, `ima.parse`, `tee.collateral.parse`, `tee.parse`, `tpm.{parse,magic,type}` | `BadEncoding` | `bad_certificate` |
/// | `cert.critical` (an unknown critical extension) | `UnhandledCriticalExtension` | `bad_certificate` |
/// | out of its time window: `cert.validity`, `foreign.validity`, `tee.chain.validity`, `binding.freshness`, `freshness` | `Expired` | `certificate_expired` |
/// | the revocation check: `tee.crl`, `tee.collateral.crl` | `Revoked` | `certificate_revoked` |
/// | the CRL could not be obtained: `collateral.crl` | `UnknownRevocationStatus` | `unknown_ca` |
/// | no chain to a trusted root: `cert.webpki`, `tee.chain.{ark,ask,asvk,vcek,vlek}`, `tee.pck_chain` | `UnknownIssuer` | `unknown_ca` |
/// | a signature: `tee.signature`, `tee.qe_report.signature`, `tpm.signature` | `BadSignature` | `decrypt_error` |
/// | everything else: policy, measurements, TCB, PCRs, IMA, binding, snapshot, missing evidence | `ApplicationVerificationFailure` | `access_denied` |
///
/// A failed `tee.crl` is refused as revoked whatever made it fail (a listed key, or a CRL that
/// is missing, unreadable or stale while the policy requires one): the step, not its detail,
/// chooses the alert.
pub fn certificate_error(step: Step) -> CertificateError {
    match step {
        Step::AZURE_PARSE
        | Step::BUNDLE_PARSE
        | Step::CERT_PARSE
        | Step::CERT_EXTENSION_CRITICAL
        | Step::CERT_EXTENSION_FORMAT
        | Step::CERT_EXTENSION_SIZE
        | Step::EVENTLOG_PARSE
        | Step::FOREIGN_CERTIFICATE
        | Step::FOREIGN_EXTENSION
        | Step::FOREIGN_FORMAT
        | Step::IMA_PARSE
        | Step::TEE_COLLATERAL_PARSE
        | Step::TEE_PARSE
        | Step::TPM_MAGIC
        | Step::TPM_PARSE
        | Step::TPM_TYPE => CertificateError::BadEncoding,
        Step::CERT_CRITICAL => CertificateError::UnhandledCriticalExtension,
        Step::BINDING_FRESHNESS
        | Step::CERT_VALIDITY
        | Step::FOREIGN_VALIDITY
        | Step::FRESHNESS
        | Step::TEE_CHAIN_VALIDITY => CertificateError::Expired,
        Step::TEE_CRL | Step::TEE_COLLATERAL_CRL => CertificateError::Revoked,
        Step::COLLATERAL_CRL => CertificateError::UnknownRevocationStatus,
        Step::CERT_WEBPKI
        | Step::TEE_CHAIN_ARK
        | Step::TEE_CHAIN_ASK
        | Step::TEE_CHAIN_ASVK
        | Step::TEE_CHAIN_VCEK
        | Step::TEE_CHAIN_VLEK
        | Step::TEE_PCK_CHAIN => CertificateError::UnknownIssuer,
        Step::TEE_SIGNATURE | Step::TEE_QE_REPORT_SIGNATURE | Step::TPM_SIGNATURE => {
            CertificateError::BadSignature
        }
        _ => CertificateError::ApplicationVerificationFailure,
    }
}

/// Where a verifier leaves its refusal for the code that drove the handshake (see the module
/// documentation): filled by [`catch_rejection`] or [`CatchRejection`], read with
/// [`AttestationRejected::from_rustls`].
#[derive(Debug, Clone, Default)]
pub struct RejectionSlot {
    caught: Option<(CertificateError, Arc<AttestationRejected>)>,
}

thread_local! {
    /// The slot open on this thread: `None` outside [`catch_rejection`].
    static SLOT: Cell<Option<RejectionSlot>> = const { Cell::new(None) };
}

/// Run `f`, which drives one handshake (`process_new_packets`, `complete_io`, ...), with a
/// rejection slot open: what it returned, and the refusal our verifiers made inside it, if any.
pub fn catch_rejection<R>(f: impl FnOnce() -> R) -> (R, RejectionSlot) {
    /// Puts the outer slot back, also when `f` unwinds.
    struct Restore(Option<RejectionSlot>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let outer = self.0.take();
            let _ = SLOT.try_with(|slot| slot.set(outer));
        }
    }
    let outer = SLOT
        .try_with(|slot| slot.replace(Some(RejectionSlot::default())))
        .ok()
        .flatten();
    let restore = Restore(outer);
    let out = f();
    let caught = SLOT
        .try_with(Cell::take)
        .ok()
        .flatten()
        .unwrap_or_default();
    drop(restore);
    (out, caught)
}

/// A future (a `tokio-rustls` `connect` or `accept`) polled with a rejection slot open: it
/// resolves to the future's output and the refusal our verifiers made while it was polled.
#[derive(Debug)]
pub struct CatchRejection<F> {
    inner: F,
    slot: RejectionSlot,
}

impl<F: Future + Unpin> CatchRejection<F> {
    pub fn new(inner: F) -> Self {
        Self {
            inner,
            slot: RejectionSlot::default(),
        }
    }
}

impl<F: Future + Unpin> Future for CatchRejection<F> {
    type Output = (F::Output, RejectionSlot);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let (poll, caught) = catch_rejection(|| Pin::new(&mut this.inner).poll(cx));
        if caught.caught.is_some() {
            this.slot = caught;
        }
        match poll {
            Poll::Ready(out) => Poll::Ready((out, core::mem::take(&mut this.slot))),
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests;
