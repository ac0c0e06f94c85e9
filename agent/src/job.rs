//! The snapshot job: owner-only (the API checks), one at a time, on a blocking thread.
//!
//! Each start gets a random job id; progress and the result are served only to requests that
//! name that id (the owner who started it), the result exactly once: it is dropped when fetched,
//! and [`RESULT_TTL`] after the walk finished if nobody fetched it. A result is never reused for
//! a later start, so nobody can obtain (or choose) a walk made before files changed.
//!
//! The result is `{"files": FileSet, "walked": WalkStats}`: every regular file under the walk
//! roots (minus the excludes) plus every file the IMA log measured since boot.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use ratls::attest::ImaSource;
use serde_json::json;

pub use crate::walk::WalkOptions;
use crate::walk::{walk, Progress};

/// How long a finished result waits for its owner before it is dropped.
pub const RESULT_TTL: Duration = Duration::from_secs(600);

/// A job id: 16 random bytes, lower-case hex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobId(String);

impl JobId {
    fn new() -> Result<Self, String> {
        use ring::rand::SecureRandom;
        let mut bytes = [0u8; 16];
        ring::rand::SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| "the system random generator failed".to_owned())?;
        Ok(Self(hex::encode(bytes)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a request for a job gets.
#[derive(Debug)]
pub enum JobView {
    /// 202 with this JSON.
    Running(serde_json::Value),
    /// 200 with this JSON body (already serialised); the job is forgotten.
    Done(Vec<u8>),
    /// 500 with this message; the job is forgotten.
    Failed(String),
    /// 404: no job with that id (never started, already fetched, expired, or replaced).
    None,
}

#[derive(Debug)]
enum State {
    Idle,
    Running {
        id: JobId,
        progress: Arc<Progress>,
        cancel: Arc<AtomicBool>,
    },
    Done {
        id: JobId,
        body: Vec<u8>,
        at: Instant,
    },
    Failed {
        id: JobId,
        error: String,
        at: Instant,
    },
}

impl State {
    fn id(&self) -> Option<&JobId> {
        match self {
            Self::Idle => None,
            Self::Running { id, .. } | Self::Done { id, .. } | Self::Failed { id, .. } => Some(id),
        }
    }

    fn expired(&self) -> bool {
        match self {
            Self::Done { at, .. } | Self::Failed { at, .. } => at.elapsed() > RESULT_TTL,
            Self::Idle | Self::Running { .. } => false,
        }
    }
}

#[derive(Debug)]
struct Inner {
    state: State,
    /// Bumped by every start and delete: a finishing walk whose generation is stale is dropped.
    generation: u64,
}

/// Why a job could not start.
#[derive(Debug)]
pub enum StartError {
    /// A job is running: 409 with its progress.
    Busy(serde_json::Value),
    /// 500.
    Internal(String),
}

/// The snapshot job.
#[derive(Debug)]
pub struct SnapshotJob {
    inner: Arc<Mutex<Inner>>,
    options: Arc<WalkOptions>,
    ima: Option<Arc<dyn ImaSource>>,
}

impl SnapshotJob {
    pub fn new(options: WalkOptions, ima: Option<Arc<dyn ImaSource>>) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                state: State::Idle,
                generation: 0,
            })),
            options: Arc::new(options),
            ima,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Critical sections are plain assignments: a poisoned lock holds consistent data.
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if inner.state.expired() {
            inner.state = State::Idle;
        }
        inner
    }

    /// The job `id`: progress while it runs; its result once (then it is forgotten).
    pub fn take(&self, id: &str) -> JobView {
        let mut inner = self.lock();
        if inner.state.id().map(JobId::as_str) != Some(id) {
            return JobView::None;
        }
        match std::mem::replace(&mut inner.state, State::Idle) {
            running @ State::Running { .. } => {
                let view = progress_view(&running);
                inner.state = running;
                JobView::Running(view)
            }
            State::Done { body, .. } => JobView::Done(body),
            State::Failed { error, .. } => JobView::Failed(error),
            State::Idle => JobView::None,
        }
    }

    /// Start a new walk (a finished, unfetched result is dropped); refused while one runs.
    pub fn start(&self) -> Result<(JobId, serde_json::Value), StartError> {
        let mut inner = self.lock();
        if matches!(inner.state, State::Running { .. }) {
            return Err(StartError::Busy(progress_view(&inner.state)));
        }
        let id = JobId::new().map_err(StartError::Internal)?;
        inner.generation += 1;
        let generation = inner.generation;
        let progress = Arc::new(Progress::default());
        let cancel = Arc::new(AtomicBool::new(false));
        inner.state = State::Running {
            id: id.clone(),
            progress: progress.clone(),
            cancel: cancel.clone(),
        };
        let shared = self.inner.clone();
        let options = self.options.clone();
        let ima = self.ima.clone();
        let job_id = id.clone();
        tokio::task::spawn_blocking(move || {
            let outcome = run(&options, ima.as_deref(), &progress, &cancel);
            let mut inner = shared
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if inner.generation != generation {
                return;
            }
            let at = Instant::now();
            inner.state = match outcome {
                Ok(body) => {
                    tracing::info!("snapshot job finished");
                    State::Done {
                        id: job_id,
                        body,
                        at,
                    }
                }
                Err(error) => {
                    tracing::warn!("snapshot job failed: {error}");
                    State::Failed {
                        id: job_id,
                        error,
                        at,
                    }
                }
            };
        });
        let view = progress_view(&inner.state);
        Ok((id, view))
    }

    /// Cancel a running job and drop any result.
    pub fn forget(&self) {
        let mut inner = self.lock();
        if let State::Running { cancel, .. } = &inner.state {
            cancel.store(true, Ordering::Relaxed);
        }
        inner.generation += 1;
        inner.state = State::Idle;
    }

    /// Cancel a running job (shutdown).
    pub fn cancel(&self) {
        if let State::Running { cancel, .. } = &self.lock().state {
            cancel.store(true, Ordering::Relaxed);
        }
    }
}

fn progress_view(state: &State) -> serde_json::Value {
    match state {
        State::Running { id, progress, .. } => {
            let p = serde_json::to_value(progress.snapshot()).unwrap_or_default();
            let field = |name: &str| p.get(name).cloned().unwrap_or(json!(0));
            json!({
                "job": id.as_str(),
                "state": "running",
                "files_done": field("files_done"),
                "files_total": field("files_total"),
                "bytes_done": field("bytes_done"),
            })
        }
        State::Done { id, .. } => json!({ "job": id.as_str(), "state": "done" }),
        State::Failed { id, .. } => json!({ "job": id.as_str(), "state": "failed" }),
        State::Idle => json!({ "state": "idle" }),
    }
}

fn run(
    options: &WalkOptions,
    ima: Option<&dyn ImaSource>,
    progress: &Progress,
    cancel: &AtomicBool,
) -> Result<Vec<u8>, String> {
    let walked = walk(options, progress, cancel).map_err(|e| format!("filesystem walk: {e}"))?;
    let mut files = walked.files;
    if let Some(ima) = ima {
        let bytes = ima
            .read_log()
            .map_err(|e| format!("reading the IMA log: {e}"))?;
        let log =
            ratls::ima::Log::parse(&bytes).map_err(|e| format!("parsing the IMA log: {e}"))?;
        files.add_ima_log(&log);
    }
    serde_json::to_vec(&json!({ "files": files, "walked": walked.stats }))
        .map_err(|e| format!("encoding the result: {e}"))
}
