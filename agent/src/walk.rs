//! The snapshot job's filesystem walk: every regular file under the roots, minus the excludes,
//! hashed with SHA-256 in parallel, streaming (a file is never read whole into memory), with
//! progress counters another thread can read.
