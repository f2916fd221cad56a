//! The checkpoint thread's priorities: its I/O in the idle class, so that its writes of the
//! database file queue behind the journal's appends, and (`store.idle_checkpoint`) its CPU
//! time under the idle scheduling policy, so that it runs on what the other threads leave.
//!
//! I/O, why: a checkpoint's commit writes tens of megabytes of redb pages and syncs them; a
//! journal append (the batch's durable point, on the pipeline's critical path) issued
//! meanwhile queued behind those writes, and took 10–50 ms instead of 1–2 (the slowest
//! appends of a `scripts/bench` run; docs/benchmarks.md). The Linux block schedulers that
//! know priorities (mq-deadline, BFQ) serve the idle class after the others, with a bound on
//! how long it can wait (mq-deadline's `prio_aging_expire`, 10 s by default; BFQ's idle
//! timeout); `none` ignores it.
//!
//! CPU, why: a checkpoint is 0.2–0.4 s of one core's work every few seconds. Beside the
//! record step, the publishing and a broker on two cores, it slowed every step of the seconds
//! it ran in, and those seconds made the latency's p99 (docs/benchmarks.md). Under
//! `SCHED_IDLE` a thread runs only on a core no other thread wants, and any other thread that
//! wakes takes the core from it at once; a lower nice value (tried: nice 10) still shares the
//! core and did not move the tail. What it costs: a checkpoint takes longer while the machine
//! is busy, and on a machine whose cores other processes keep busy it can starve. A lock it
//! holds when it is preempted is held until it runs again; what it shares with the pipeline
//! is held briefly (the layers' lock, to drop the frozen overlay; redb's transaction
//! bookkeeping), and whoever waits on it frees a core for it.
//!
//! A checkpoint that falls behind is bounded either way: a write that finds the next overlay
//! full waits for it (the pipeline then stops asking for CPU, which the checkpoint gets), and
//! fails as a transient error after `FREEZE_WAIT`. An unprivileged thread cannot leave
//! `SCHED_IDLE` again (it needs `CAP_SYS_NICE`), so the policy is chosen once, at start-up.
//!
//! The `unsafe` here are system calls with integer arguments, or a pointer to a local.
#![allow(unsafe_code)]

use std::io;

const IOPRIO_WHO_PROCESS: libc::c_long = 1;
/// `who = 0`: the calling thread.
const CALLING_THREAD: libc::c_long = 0;
const IOPRIO_CLASS_SHIFT: u32 = 13;
const IOPRIO_CLASS_IDLE: libc::c_long = 3;

/// Puts the calling thread's I/O in the idle class.
pub(super) fn idle_io_for_this_thread() -> io::Result<()> {
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

/// Puts the calling thread under the idle scheduling policy (`SCHED_IDLE`), for good.
pub(super) fn idle_cpu_for_this_thread() -> io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: sched_setscheduler(2) reads the one `sched_param` passed, a local that outlives
    // the call; pid 0 is the calling thread.
    let result = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The scheduling policy of thread `tid` of this process (`libc::SCHED_IDLE`, …).
#[cfg(test)]
pub(super) fn policy_of(tid: libc::c_long) -> io::Result<libc::c_int> {
    let tid =
        libc::pid_t::try_from(tid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: sched_getscheduler(2) takes one integer and touches no memory of ours.
    let result = unsafe { libc::sched_getscheduler(tid) };
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(result)
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
    use super::super::{EmbeddedOptions, EmbeddedStore};
    use super::*;

    #[test]
    fn a_thread_put_in_the_idle_class_and_policy_is_in_them_and_the_others_are_not() {
        let (class, policy) = std::thread::spawn(|| {
            idle_io_for_this_thread().unwrap();
            idle_cpu_for_this_thread().unwrap();
            (
                class_of(CALLING_THREAD).unwrap(),
                policy_of(CALLING_THREAD).unwrap(),
            )
        })
        .join()
        .unwrap();
        assert_eq!((class, policy), (IOPRIO_CLASS_IDLE, libc::SCHED_IDLE));
        assert_ne!(class_of(CALLING_THREAD).unwrap(), IOPRIO_CLASS_IDLE);
        assert_eq!(policy_of(CALLING_THREAD).unwrap(), libc::SCHED_OTHER);
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

    /// The I/O class and CPU policy of the store's checkpoint thread, once it has set them
    /// (it names itself and sets them as it starts: waits for that, a little).
    fn checkpoint_thread_priorities(expected: (libc::c_long, libc::c_int)) {
        let started = std::time::Instant::now();
        let priorities = || -> Vec<(libc::c_long, libc::c_int)> {
            threads_named("store-checkpoin")
                .into_iter()
                .map(|tid| (class_of(tid).unwrap(), policy_of(tid).unwrap()))
                .collect()
        };
        while priorities() != [expected] {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(10),
                "one checkpoint thread, with I/O class and CPU policy {expected:?}: {:?}",
                priorities()
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    #[test]
    fn the_store_checkpoints_in_the_idle_class_and_under_the_idle_policy() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        checkpoint_thread_priorities((IOPRIO_CLASS_IDLE, libc::SCHED_IDLE));
        drop(store);
        assert!(
            threads_named("store-checkpoin").is_empty(),
            "stopped at close"
        );
    }

    #[test]
    fn without_idle_checkpoint_the_checkpoint_keeps_the_normal_cpu_policy() {
        let dir = tempfile::tempdir().unwrap();
        let options = EmbeddedOptions {
            idle_checkpoint: false,
            ..EmbeddedOptions::default()
        };
        let _store = EmbeddedStore::open_with_options(dir.path(), options).unwrap();
        checkpoint_thread_priorities((IOPRIO_CLASS_IDLE, libc::SCHED_OTHER));
    }
}
