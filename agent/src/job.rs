//! The snapshot job: one at a time, on a blocking thread; the result is cached until deleted.
//!
//! The result is `{"files": FileSet, "walked": WalkStats}`: every regular file under the walk
//! roots (minus the excludes) plus every file the IMA log measured since boot.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use ratls::attest::ImaSource;
use serde_json::json;

// TEMPORARY: the stub stands in for `crate::walk` until the walk lands (see walk_stub.rs).
pub use crate::walk::WalkOptions;
use crate::walk::{walk, Progress};

/// What `GET /api/v1/snapshot` answers.
#[derive(Debug)]
pub enum JobView {
    /// 202 with this JSON.
    Running(serde_json::Value),
    /// 200 with this JSON body (already serialised).
    Done(Arc<Vec<u8>>),
    /// 500 with this message.
    Failed(String),
    /// 404.
    None,
}

#[derive(Debug)]
enum State {
    Idle,
    Running {
        progress: Arc<Progress>,
        cancel: Arc<AtomicBool>,
    },
    Done(Arc<Vec<u8>>),
    Failed(String),
}

#[derive(Debug)]
struct Inner {
    state: State,
    /// Bumped by every start and delete: a finishing walk whose generation is stale is dropped.
    generation: u64,
}

/// The snapshot job and its cached result.
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
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The state now.
    pub fn view(&self) -> JobView {
        view(&self.lock().state)
    }

    /// Start a job unless one runs or a result is cached; returns the state afterwards.
    pub fn start(&self) -> JobView {
        let mut inner = self.lock();
        if matches!(inner.state, State::Running { .. } | State::Done(_)) {
            return view(&inner.state);
        }
        inner.generation += 1;
        let generation = inner.generation;
        let progress = Arc::new(Progress::default());
        let cancel = Arc::new(AtomicBool::new(false));
        inner.state = State::Running {
            progress: progress.clone(),
            cancel: cancel.clone(),
        };
        let shared = self.inner.clone();
        let options = self.options.clone();
        let ima = self.ima.clone();
        tokio::task::spawn_blocking(move || {
            let outcome = run(&options, ima.as_deref(), &progress, &cancel);
            let mut inner = shared
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if inner.generation != generation {
                return;
            }
            inner.state = match outcome {
                Ok(body) => {
                    eprintln!("cosmian_vm_agent: snapshot job finished");
                    State::Done(Arc::new(body))
                }
                Err(e) => {
                    eprintln!("cosmian_vm_agent: snapshot job failed: {e}");
                    State::Failed(e)
                }
            };
        });
        view(&inner.state)
    }

    /// Forget the cached result (and cancel a running job).
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

fn view(state: &State) -> JobView {
    match state {
        State::Idle => JobView::None,
        State::Running { progress, .. } => {
            let p = serde_json::to_value(progress.snapshot()).unwrap_or_default();
            let field = |name: &str| p.get(name).cloned().unwrap_or(json!(0));
            JobView::Running(json!({
                "state": "running",
                "files_done": field("files_done"),
                "files_total": field("files_total"),
                "bytes_done": field("bytes_done"),
            }))
        }
        State::Done(body) => JobView::Done(body.clone()),
        State::Failed(e) => JobView::Failed(e.clone()),
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
