//! The checkpoint thread's I/O priority: the idle class, so that its writes of the database
//! file queue behind the journal's appends.
//!
//! Why: a checkpoint's commit writes tens of megabytes of redb pages and syncs them; a
//! journal append (the batch's durable point, on the pipeline's critical path) issued
//! meanwhile queued behind those writes, and took 10–50 ms instead of 1–2 (the slowest
//! appends of a `scripts/bench` run; docs/benchmarks.md). The Linux block schedulers that
//! know priorities (mq-deadline, BFQ) serve the idle class after the others, with a bound on
//! how long it can wait (mq-deadline's `prio_aging_expire`, 10 s by default; BFQ's idle
//! timeout); `none` ignores it. A checkpoint that falls behind is bounded anyway: a write
//! that finds the next overlay full waits for it.
//!
//! The one `unsafe` here is a system call with integer arguments (libc has no wrapper).
#![allow(unsafe_code)]

use std::io;

const IOPRIO_WHO_PROCESS: libc::c_long = 1;
/// `who = 0`: the calling thread.
const CALLING_THREAD: libc::c_long = 0;
const IOPRIO_CLASS_SHIFT: u32 = 13;
const IOPRIO_CLASS_IDLE: libc::c_long = 3;

/// Puts the calling thread's I/O in the idle class.
pub(super) fn idle_for_this_thread() -> io::Result<()> {
    // SAFETY: ioprio_set(2) takes three integers and touches no memory of ours.
    let result = unsafe {
        libc::syscall(
            libc::SYS_ioprio_set,
            IOPRIO_WHO_PROCESS,
            CALLING_THREAD,
            IOPRIO_CLASS_IDLE << IOPRIO_CLASS_SHIFT,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The I/O priority class of thread `tid` of this process (3: idle).
#[cfg(test)]
pub(super) fn class_of(tid: libc::c_long) -> io::Result<libc::c_long> {
    // SAFETY: ioprio_get(2) takes two integers and touches no memory of ours.
    let result = unsafe { libc::syscall(libc::SYS_ioprio_get, IOPRIO_WHO_PROCESS, tid) };
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(result >> IOPRIO_CLASS_SHIFT)
    }
}

#[cfg(test)]
mod tests {
    use super::super::EmbeddedStore;
    use super::*;

    #[test]
    fn a_thread_put_in_the_idle_class_is_in_it_and_the_others_are_not() {
        let class = std::thread::spawn(|| {
            idle_for_this_thread().unwrap();
            class_of(CALLING_THREAD).unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(class, IOPRIO_CLASS_IDLE);
        assert_ne!(class_of(CALLING_THREAD).unwrap(), IOPRIO_CLASS_IDLE);
    }

    /// The threads of this process named `name` (as the kernel shortens it), by id.
    fn threads_named(name: &str) -> Vec<libc::c_long> {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|task| {
                let task = task.ok()?;
                let comm = std::fs::read_to_string(task.path().join("comm")).ok()?;
                (comm.trim_end() == name).then(|| task.file_name().to_str()?.parse().ok())?
            })
            .collect()
    }

    #[test]
    fn the_store_checkpoints_in_the_idle_class() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        // The thread names itself and sets its class as it starts: wait for it, a little.
        let started = std::time::Instant::now();
        let classes = || -> Vec<libc::c_long> {
            let threads = threads_named("store-checkpoin");
            threads
                .into_iter()
                .map(|tid| class_of(tid).unwrap())
                .collect()
        };
        while classes() != [IOPRIO_CLASS_IDLE] {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(10),
                "one checkpoint thread, in the idle class: {:?}",
                classes()
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        drop(store);
        assert!(
            threads_named("store-checkpoin").is_empty(),
            "stopped at close"
        );
    }
}
