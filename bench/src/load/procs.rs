//! The processes under test and what the harness reads of them: a child that is killed and
//! reaped when dropped, its CPU time (every thread, nanoseconds from schedstat) and resident
//! memory, and pinning and fd limits. The crate's only `unsafe` is here.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A proxy under test, killed and reaped when dropped, also when a failed check unwinds: a
/// benchmark must never leave a haproxy behind on the machine.
pub struct Proc {
    child: Child,
}

impl Proc {
    /// Starts `cmd` pinned to `cpu` with `taskset`, its stdout and stderr appended to `log`.
    pub fn spawn_pinned(
        cpu: usize,
        program: &str,
        args: &[String],
        log: &Path,
    ) -> io::Result<Proc> {
        let out = std::fs::File::create(log)?;
        let child = Command::new("taskset")
            .arg("-c")
            .arg(cpu.to_string())
            .arg(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .env("RUST_LOG", "warn")
            .spawn()?;
        Ok(Proc { child })
    }

    pub fn from_child(child: Child) -> Proc {
        Proc { child }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the process to exit on its own.
    pub fn wait(&mut self) {
        let _ = self.child.wait();
    }

    /// Whether the process has exited (a proxy that refused its config, say).
    pub fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU time (user + system) of every thread of `pid`, in nanoseconds. schedstat counts in
/// nanoseconds where /proc/PID/stat counts 10 ms ticks, too coarse for a few seconds of load.
/// `taskset` execs the proxy, so the pid is the proxy's own.
pub fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// Resident memory of `pid` in bytes (VmRSS: the user-space pages it touched; socket buffers
/// are kernel memory and not in it).
pub fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// Open file descriptors of `pid`.
pub fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Pins the calling thread (and so every thread it starts later) to `cpu`.
pub fn pin_self(cpu: usize) -> io::Result<()> {
    // SAFETY: `set` is a plain bitmask owned by this frame; sched_setaffinity reads
    // size_of::<cpu_set_t>() bytes of it and pid 0 means the calling thread.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// RLIMIT_NOFILE as (soft, hard).
fn nofile() -> io::Result<(libc::rlim_t, libc::rlim_t)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid rlimit that getrlimit writes.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((lim.rlim_cur, lim.rlim_max))
}

fn set_nofile(soft: libc::rlim_t, hard: libc::rlim_t) -> io::Result<()> {
    let lim = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: `lim` is a valid rlimit that setrlimit reads.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// This process's soft open-file limit (what the proxies it starts inherit).
pub fn fd_limit() -> u64 {
    nofile().map_or(1024, |(soft, _)| soft)
}

/// The open-file limit the harness asks for (children inherit it).
const WANT_FDS: libc::rlim_t = 65_536;

/// Raises this process's open-file limit to [`WANT_FDS`] (or, without CAP_SYS_RESOURCE, the
/// soft limit to the hard one; children inherit it) and returns it. Holding N connections
/// through a proxy takes 2N fds here and as many in the proxy.
pub fn raise_fd_limit() -> io::Result<u64> {
    let (_, hard) = nofile()?;
    // With CAP_SYS_RESOURCE the hard limit may rise too (up to fs.nr_open): the idle workload
    // holds 10,000 connections, two fds each in the proxy. Without it, the soft limit rises to
    // the hard one and the caller caps the count.
    let want = hard.max(WANT_FDS);
    if set_nofile(want, want).is_ok() {
        return Ok(want);
    }
    set_nofile(hard, hard)?;
    Ok(hard)
}

/// Waits until `addr` accepts a TCP connection (the proxy is listening), or `proc` exits, or
/// `limit` passes. There is no readiness event common to haproxy, nginx and sniproxy, so this
/// polls; it only starts the measurements, nothing is timed against it.
pub fn wait_listening(proc: &mut Proc, addr: SocketAddr, limit: Duration) -> Result<(), String> {
    let t0 = Instant::now();
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if proc.exited() {
            return Err("exited at start (see its log)".into());
        }
        if t0.elapsed() > limit {
            return Err(format!("not listening on {addr} after {limit:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A free TCP port on 127.0.0.1 (bound, then released for the proxy to take).
pub fn free_port() -> io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The first line a command prints of its version (stdout or stderr), or "not installed".
pub fn version(program: &str, arg: &str) -> String {
    match Command::new(program).arg(arg).output() {
        Ok(o) => {
            let text = String::from_utf8_lossy(if o.stdout.is_empty() {
                &o.stderr
            } else {
                &o.stdout
            })
            .into_owned();
            text.lines().next().unwrap_or("").trim().to_string()
        }
        Err(_) => "not installed".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A panic while a proxy runs (a failed check) still kills and reaps it.
    #[test]
    fn a_panic_leaves_no_child_behind() {
        let child = Command::new("sleep")
            .arg("600")
            .spawn()
            .expect("spawn sleep");
        let pid = child.id();
        let unwound = std::panic::catch_unwind(move || {
            let _proc = Proc::from_child(child);
            panic!("a failed check");
        });
        assert!(unwound.is_err());
        // Reaped, not just killed: a zombie would still have its /proc entry.
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "child {pid} outlived the panic"
        );
    }

    #[test]
    fn reads_its_own_cpu_and_memory() {
        let me = std::process::id();
        let t0 = cpu_ns(me);
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(cpu_ns(me) > t0, "schedstat did not move");
        assert!(rss_bytes(me) > 1 << 20);
        assert!(fds(me) >= 3);
    }
}
