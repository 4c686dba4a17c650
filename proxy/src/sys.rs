//! The crate's only `unsafe`: thin wrappers over `recv(MSG_PEEK)`, `pipe2(2)` and `splice(2)`,
//! plus a per-thread pool of pipes. Everything above this module is safe code.

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Copies up to `buf.len()` queued bytes without consuming them. `Ok(0)` means EOF.
pub fn peek(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is a valid, writable region of `buf.len()` bytes for the whole call, and
    // recv(2) writes at most that many bytes into it. The fd is borrowed from a live socket.
    let n = unsafe {
        libc::recv(
            fd,
            buf.as_mut_ptr().cast::<libc::c_void>(),
            buf.len(),
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Bytes waiting in a socket's receive queue (`FIONREAD`): O(1), unlike a peek, which walks
/// every queued segment to copy it.
pub fn bytes_queued(fd: RawFd) -> io::Result<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int through the pointer, which is valid for the call.
    let rc = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n as *mut libc::c_int) };
    if rc != 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(usize::try_from(n).unwrap_or(0))
    }
}

/// Sets `SO_RCVLOWAT`: readiness for reading is reported only once `bytes` are queued (or at
/// EOF or on an error). The kernel caps it at half the receive buffer.
pub fn set_rcvlowat(fd: RawFd, bytes: usize) -> io::Result<()> {
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: the option value is a c_int that lives for the whole call, and its size is passed.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVLOWAT,
            (&value as *const libc::c_int).cast::<libc::c_void>(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Pipe capacity we ask for. The kernel default is 64 KiB (16 pages); one splice call moves at
/// most what fits in the pipe, so a larger pipe means fewer syscalls per GiB. Measured with
/// the bulk binary that `bench/src/bin/load.rs` replaced (one 4 GiB connection, release build,
/// 2-core VM, 3 runs each): gateway
/// CPU 0.44 s/GiB at 64 KiB, 0.28-0.37 at 256 KiB, 0.24-0.28 at 1 MiB. Pipe pages count
/// against the user's `fs.pipe-user-pages-soft` (16,384 pages by default), past which an
/// unprivileged process gets small pipes; 256 KiB keeps most of the gain while a worker's whole
/// pool (64 pipes, 4,096 pages) stays well under it. `F_SETPIPE_SZ` failing just leaves the
/// default size.
#[cfg(target_os = "linux")]
pub const PIPE_SIZE: usize = 256 * 1024;

/// Pipes kept per worker thread for reuse. A direction takes a pipe for one burst and returns it
/// empty, so this bounds pipes held by transfers that ended, not by open connections; creating a
/// pipe costs two syscalls and two fds.
#[cfg(target_os = "linux")]
const POOL_MAX: usize = 64;

/// A non-blocking pipe used as splice(2)'s in-kernel buffer.
#[cfg(target_os = "linux")]
#[derive(Debug)]
pub struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

#[cfg(target_os = "linux")]
impl Pipe {
    /// A pipe from this thread's pool, or a new one.
    pub fn get() -> io::Result<Pipe> {
        if let Some(p) = POOL.with(|p| p.borrow_mut().pop()) {
            return Ok(p);
        }
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: `fds` is a valid array of two c_ints for pipe2 to fill.
        let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both fds are open and owned by nobody else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: F_SETPIPE_SZ takes an int argument; the fd is the pipe we just made. Failure
        // is harmless (the default size stays, as `capacity` reports), so the result is
        // ignored on purpose.
        unsafe {
            libc::fcntl(
                write.as_raw_fd(),
                libc::F_SETPIPE_SZ,
                PIPE_SIZE as libc::c_int,
            )
        };
        Ok(Pipe { read, write })
    }

    /// Returns an empty pipe to this thread's pool. A pipe still holding bytes is closed instead:
    /// its contents belong to a connection that is gone.
    pub fn put(self, empty: bool) {
        if empty {
            POOL.with(|p| {
                let mut pool = p.borrow_mut();
                if pool.len() < POOL_MAX {
                    pool.push(self);
                }
            });
        }
    }

    /// How many bytes the pipe holds when full (F_GETPIPE_SZ): PIPE_SIZE, or less when the
    /// kernel would not grow it (past `fs.pipe-user-pages-soft` an unprivileged user's new
    /// pipes get two pages). Asked only when a pipe must hold bytes already read, so pipes
    /// carry no field for it.
    pub fn capacity(&self) -> usize {
        // SAFETY: F_GETPIPE_SZ takes no argument; the fd is this pipe's write end.
        let n = unsafe { libc::fcntl(self.write.as_raw_fd(), libc::F_GETPIPE_SZ) };
        usize::try_from(n).unwrap_or(0)
    }

    /// Resizes the pipe, as the kernel sizes an unprivileged user's new pipes past
    /// `fs.pipe-user-pages-soft`; tests use it to hand the pool a small pipe.
    #[cfg(test)]
    pub fn resize(&self, bytes: usize) -> io::Result<()> {
        // SAFETY: F_SETPIPE_SZ takes an int argument; the fd is this pipe's write end.
        let set = unsafe {
            libc::fcntl(
                self.write.as_raw_fd(),
                libc::F_SETPIPE_SZ,
                bytes as libc::c_int,
            )
        };
        if set < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Copies `buf` into the pipe (write(2)): for bytes already in user space that the
    /// destination could not take yet. Returns how many went in.
    pub fn push(&self, buf: &[u8]) -> io::Result<usize> {
        // SAFETY: `buf` is valid for reads of `buf.len()` bytes for the whole call; the fd is
        // this pipe's write end.
        let n = unsafe {
            libc::write(
                self.write.as_raw_fd(),
                buf.as_ptr().cast::<libc::c_void>(),
                buf.len(),
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    /// Moves up to `len` bytes from socket `from` into the pipe. `Ok(0)` is EOF on the socket.
    pub fn fill_from(&self, from: RawFd, len: usize) -> io::Result<usize> {
        splice(from, self.write.as_raw_fd(), len)
    }

    /// Moves up to `len` bytes from the pipe into socket `to`.
    pub fn drain_to(&self, to: RawFd, len: usize) -> io::Result<usize> {
        splice(self.read.as_raw_fd(), to, len)
    }
}

#[cfg(target_os = "linux")]
thread_local! {
    static POOL: RefCell<Vec<Pipe>> = const { RefCell::new(Vec::new()) };
}

#[cfg(target_os = "linux")]
fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: splice(2) with null offsets only reads and writes the kernel objects behind the two
    // borrowed fds; no user memory is involved.
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// CPU time (user + system) the calling thread has used; tests use it to prove a wait is idle.
#[cfg(all(test, target_os = "linux"))]
pub fn thread_cpu_time() -> io::Result<std::time::Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for clock_gettime to fill.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(std::time::Duration::new(
        ts.tv_sec as u64,
        ts.tv_nsec as u32,
    ))
}

/// Pipes currently pooled on this thread (for tests).
#[cfg(test)]
#[cfg(target_os = "linux")]
pub fn pooled_pipes() -> usize {
    POOL.with(|p| p.borrow().len())
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn pipes_are_pooled_only_when_empty() {
        let before = pooled_pipes();
        let p = Pipe::get().unwrap();
        p.put(true);
        assert_eq!(pooled_pipes(), before + 1);
        let p = Pipe::get().unwrap();
        assert_eq!(pooled_pipes(), before);
        p.put(false);
        assert_eq!(pooled_pipes(), before);
    }
}

/// Raises this process's soft limit on open files to its hard limit (what Go's runtime and
/// Envoy's deployments do: every connection is one fd, or two while forwarding, and the soft
/// default of 1024 would cap a gateway at a few hundred connections). Returns the limit now in
/// force; a limit that cannot be read or raised is left as it is.
pub fn raise_fd_limit() -> io::Result<libc::rlim_t> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the valid struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit reads one valid rlimit; raising the soft limit up to the hard one
        // needs no privilege.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(io::Error::last_os_error());
        }
        lim = raised;
    }
    Ok(lim.rlim_cur)
}
