//! The app the owner configures: start, stop and restart through systemd, supervisor, or the
//! agent itself (`standalone`: the agent spawns `command` and kills it).

use std::process::Stdio;

use tokio::process::{Child, Command};
use tokio::sync::Mutex;

use crate::config::{AppConfig, ServiceType};

/// A service action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Restart,
    Start,
    Stop,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Self::Restart => "restart",
            Self::Start => "start",
            Self::Stop => "stop",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Restart, Self::Start, Self::Stop]
            .into_iter()
            .find(|a| a.name() == name)
    }
}

/// Runs actions on the configured app.
#[derive(Debug)]
pub struct AppControl {
    pub config: AppConfig,
    /// The standalone child, when running.
    child: Mutex<Option<Child>>,
}

impl AppControl {
    pub fn new(config: AppConfig) -> Self {
        Self {
            config,
            child: Mutex::new(None),
        }
    }

    /// Run `action`; the error is a message safe to return to the client.
    pub async fn run(&self, action: Action) -> Result<(), String> {
        match self.config.service_type {
            ServiceType::Systemd => self.external("systemctl", action).await,
            ServiceType::Supervisor => {
                self.external("supervisorctl", action)
                    .await
            }
            ServiceType::Standalone => self.standalone(action).await,
        }
    }

    async fn external(&self, program: &str, action: Action) -> Result<(), String> {
        let name = &self.config.service_name;
        let output = Command::new(program)
            .arg(action.name())
            .arg(name)
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|e| format!("cannot run {program}: {e}"))?;
        if output.status.success() {
            Ok(())
        } else {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let first = stderr
                .lines()
                .next()
                .unwrap_or("")
                .trim();
            Err(format!(
                "{program} {} {name} failed ({}){}",
                action.name(),
                output.status,
                if first.is_empty() {
                    String::new()
                } else {
                    format!(": {first}")
                }
            ))
        }
    }

    async fn standalone(&self, action: Action) -> Result<(), String> {
        let mut child = self.child.lock().await;
        if matches!(action, Action::Stop | Action::Restart) {
            stop(&mut child).await;
        }
        if matches!(action, Action::Start | Action::Restart) {
            if let Some(c) = child.as_mut() {
                if matches!(c.try_wait(), Ok(None)) {
                    return Ok(()); // already running
                }
            }
            let (program, args) = self
                .config
                .command
                .split_first()
                .ok_or("no command configured")?;
            let mut cmd = Command::new(program);
            cmd.args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .kill_on_drop(true);
            if self.config.app_storage.is_dir() {
                cmd.current_dir(&self.config.app_storage);
            }
            let spawned = cmd
                .spawn()
                .map_err(|e| format!("cannot start {program}: {e}"))?;
            let pid = spawned.id().unwrap_or(0);
            tracing::info!(
                app = %self.config.service_name,
                pid,
                "app {} started (pid {pid})",
                self.config.service_name
            );
            *child = Some(spawned);
        }
        Ok(())
    }

    /// Stop a standalone child (agent shutdown).
    pub async fn shutdown(&self) {
        if self.config.service_type == ServiceType::Standalone {
            stop(&mut *self.child.lock().await).await;
        }
    }
}

async fn stop(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = c.kill().await;
    }
}
