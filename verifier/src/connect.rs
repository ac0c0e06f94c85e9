//! `cosmian_vm connect HOST:PORT`: verify any RA-TLS endpoint by simply connecting.
//!
//! Certificate mode (default): the evidence in the endpoint's RA-TLS certificate is verified
//! during the handshake (binding = key, freshness = time window; the IMA log does not travel in
//! certificates, so the verdict says IMA is deferred). `--fresh`: the ALPN `cosmian-attest/1` is
//! negotiated and the endpoint answers our challenge with evidence bound to this session.

use std::process::ExitCode;
use std::time::Duration;

use ratls::binding::Role;
use ratls::tls::fresh::{client_exchange, FreshError, FreshOptions};
use ratls::tls::{AttestationPolicy, Mode, ALPN_ATTEST};

use crate::cli::{ConnectArgs, Global, UsageError, EXIT_REJECTED, EXIT_TRUSTED};
use crate::net::{self, ConnectError, Target, TlsSettings};
use crate::output;
use crate::vm::{read_sim_root, Outcome, Stop};

pub async fn connect(global: &Global, args: &ConnectArgs) -> Outcome {
    let target = Target::parse(&args.target, 443)
        .map_err(|e| UsageError(format!("{}: {e}", args.target)))?;
    let role = Role::new(&args.role).map_err(|e| UsageError(format!("--role: {e}")))?;
    let base = match &args.policy {
        Some(path) => {
            ratls::Policy::from_file(path).map_err(|e| UsageError(format!("--policy {e}")))?
        }
        None => ratls::Policy::default(),
    };
    let tls = TlsSettings::from_global(global)?;
    let mut policy = AttestationPolicy::new(base, role)
        .with_max_age(Duration::from_secs(args.max_age))
        .with_collateral(crate::collateral::client(global));
    if let Some(ark) = read_sim_root(global)? {
        ratls::tls::danger::trust_simulated_root(&mut policy, &ark);
    }
    let (mode, alpn) = if args.fresh {
        (Mode::Fresh, vec![ALPN_ATTEST.to_vec()])
    } else {
        (Mode::Certificate, Vec::new())
    };
    let verifier = tls.server_verifier(policy.clone(), mode);
    let config = net::client_config(verifier.clone(), None, alpn)?;
    let mut stream = match net::connect(&target, config, tls.timeout).await {
        Ok(s) => s,
        Err(ConnectError::Rejected(verdict)) => {
            output::print_verdict(&verdict, global.json);
            return Ok(ExitCode::from(EXIT_REJECTED));
        }
        Err(ConnectError::Other(e)) => return Err(Stop::Usage(UsageError(e))),
    };
    let verdict = if args.fresh {
        let mut opts = FreshOptions::new().verify_peer(policy);
        opts.timeout = tls.timeout;
        match client_exchange(&mut stream, &opts).await {
            Ok(outcome) => outcome.peer_verdict,
            Err(FreshError::Rejected(rejected)) => {
                output::print_verdict(&rejected.verdict, global.json);
                return Ok(ExitCode::from(EXIT_REJECTED));
            }
            Err(e) => return Err(Stop::Usage(UsageError(format!("{target}: {e}")))),
        }
    } else {
        ratls::tls::peer_verdict(stream.get_ref().1, &verifier).map(|v| (*v).clone())
    };
    let Some(verdict) = verdict else {
        return Err(Stop::Usage(UsageError(format!(
            "{target}: the connection carried no verdict"
        ))));
    };
    output::print_verdict(&verdict, global.json);
    Ok(ExitCode::from(if verdict.is_trusted() {
        EXIT_TRUSTED
    } else {
        EXIT_REJECTED
    }))
}
