//! System calls per connection and per MiB, counted by `strace -c` attached to every thread of
//! the proxy during a fixed workload. strace slows the proxy many times over, so only the
//! counts are read, never the times; perf's instruction counters are not available on every
//! machine (`perf stat -e instructions true` says "not supported" on this one).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use super::procs::Proc;

#[derive(Clone, Debug, Default)]
pub struct Counts {
    pub per_conn: f64,
    pub per_mib: f64,
    /// The most frequent calls of the connection workload, per connection.
    pub conn_top: Vec<(String, f64)>,
    /// The most frequent calls of the bulk workload, per MiB.
    pub bulk_top: Vec<(String, f64)>,
}

/// A running `strace -c` on every thread of `pid`, its summary going to `out`.
pub struct Trace {
    proc: Proc,
    out: std::path::PathBuf,
}

impl Trace {
    /// Attaches to every thread of `pid` (`-f -p` takes the whole thread group, including
    /// threads started later) and returns once strace says so: one "attached" line, "attached
    /// with N threads" for a multi-threaded process. Naming each thread with its own `-p`
    /// instead races with threads that exit meanwhile (tokio's blocking pool), and a line
    /// never printed would hang here.
    pub fn attach(pid: u32, out: &Path) -> Result<Trace, String> {
        let mut child = Command::new("strace")
            .args(["-f", "-c", "-o"])
            .arg(out)
            .args(["-p", &pid.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("strace: {e}"))?;
        let stderr = child.stderr.take().ok_or("strace: no stderr")?;
        let proc = Proc::from_child(child);
        let mut lines = BufReader::new(stderr).lines();
        loop {
            match lines.next() {
                Some(Ok(l)) if l.contains("attached") => break,
                Some(Ok(_)) => {}
                _ => return Err("strace ended before attaching".into()),
            }
        }
        // Keep draining its stderr so strace never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Ok(Trace {
            proc,
            out: out.to_path_buf(),
        })
    }

    /// Detaches (SIGINT makes strace write its summary) and returns (total calls, per call).
    pub fn finish(mut self) -> Result<(u64, Vec<(String, u64)>), String> {
        let pid = self.proc.pid().to_string();
        let _ = Command::new("kill").args(["-INT", &pid]).status();
        self.proc.wait();
        let text = std::fs::read_to_string(&self.out).map_err(|e| e.to_string())?;
        Ok(parse_summary(&text))
    }
}

/// Reads `strace -c`'s table: `% time seconds usecs/call calls [errors] syscall`.
pub fn parse_summary(text: &str) -> (u64, Vec<(String, u64)>) {
    let mut total = 0;
    let mut rows = Vec::new();
    for line in text.lines() {
        let t: Vec<&str> = line.split_whitespace().collect();
        if t.len() < 5 || t[0].parse::<f64>().is_err() {
            continue;
        }
        let (Some(name), Ok(calls)) = (t.last(), t[3].parse::<u64>()) else {
            continue;
        };
        if *name == "total" {
            total = calls;
        } else {
            rows.push((name.to_string(), calls));
        }
    }
    rows.sort_by_key(|r| std::cmp::Reverse(r.1));
    (total, rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_strace_summary() {
        let text = "% time     seconds  usecs/call     calls    errors syscall\n\
------ ----------- ----------- --------- --------- ----------------\n\
 40.00    0.000400           2       200           splice\n\
 30.00    0.000300           1       150        50 recvfrom\n\
------ ----------- ----------- --------- --------- ----------------\n\
100.00    0.001000           2       350        50 total\n";
        let (total, rows) = parse_summary(text);
        assert_eq!(total, 350);
        assert_eq!(rows[0], ("splice".to_string(), 200));
        assert_eq!(rows[1], ("recvfrom".to_string(), 150));
    }
}
