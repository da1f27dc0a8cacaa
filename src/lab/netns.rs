//! The thin adapter to the kernel: `ip netns`, `ip`, `iptables-restore`, and the processes the
//! lab starts inside its namespaces. [`Lab`] owns all of it and removes it when dropped.

use super::interrupt;
use super::state::{self, State};
use super::topology::{build_commands, Host, Names};
use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("`{cmd}` failed: {detail}")]
    Command { cmd: String, detail: String },
    #[error("cannot run `{program}`: {source}")]
    Spawn {
        program: String,
        #[source]
        source: io::Error,
    },
    #[error("{what} did not start: {detail}")]
    NotReady { what: String, detail: String },
    #[error("interrupted")]
    Interrupted,
    #[error(transparent)]
    Model(#[from] super::scenario::ModelError),
}

pub type LabResult<T> = Result<T, LabError>;

/// Runs a command to completion, failing with its stderr.
pub fn run(argv: &[String], stdin: Option<&str>) -> LabResult<String> {
    let (program, args) = argv.split_first().ok_or_else(|| LabError::Command {
        cmd: String::new(),
        detail: "empty command".into(),
    })?;
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| LabError::Spawn {
            program: program.clone(),
            source,
        })?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // A write error shows up as the command's own failure below.
        let _ = pipe.write_all(text.as_bytes());
    }
    let output = child.wait_with_output().map_err(|source| LabError::Spawn {
        program: program.clone(),
        source,
    })?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(LabError::Command {
            cmd: argv.join(" "),
            detail: format!(
                "{} ({})",
                String::from_utf8_lossy(&output.stderr).trim(),
                output.status
            ),
        })
    }
}

pub fn check_interrupt() -> LabResult<()> {
    if interrupt::interrupted() {
        Err(LabError::Interrupted)
    } else {
        Ok(())
    }
}

/// A process started inside a namespace, with its stdout lines arriving on a channel.
#[derive(Debug)]
pub struct Proc {
    pub what: String,
    child: Child,
    lines: mpsc::Receiver<String>,
    /// Lines already taken off the channel (by [`Proc::first_line`]).
    seen: Vec<String>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Proc {
    /// `ip netns exec NS PROGRAM ARGS…` (ip execs PROGRAM, so the pid is PROGRAM's). A `quiet`
    /// process has no pipes (it may outlive the lab with `--keep`).
    pub fn spawn(
        ns: &str,
        program: &str,
        args: &[String],
        what: &str,
        quiet: bool,
    ) -> LabResult<Proc> {
        let pipe = || if quiet { Stdio::null() } else { Stdio::piped() };
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, program])
            .args(args)
            .stdin(Stdio::null())
            .stdout(pipe())
            .stderr(pipe())
            .spawn()
            .map_err(|source| LabError::Spawn {
                program: format!("ip netns exec {ns} {program}"),
                source,
            })?;
        let (tx, lines) = mpsc::channel();
        if let Some(stdout) = child.stdout.take() {
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        let stderr = child.stderr.take().map(|stderr| {
            std::thread::spawn(move || {
                // Bounded: keep the last lines only.
                let mut text = String::new();
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    text.push_str(&line);
                    text.push('\n');
                    if text.len() > 8192 {
                        text.drain(..text.len() - 4096);
                    }
                }
                text
            })
        });
        Ok(Proc {
            what: what.to_string(),
            child,
            lines,
            seen: Vec::new(),
            stderr,
        })
    }

    /// Waits for the first stdout line (the process's "I am ready").
    pub fn first_line(&mut self, timeout: Duration) -> LabResult<String> {
        let deadline = Instant::now() + timeout;
        loop {
            check_interrupt()?;
            match self.lines.recv_timeout(Duration::from_millis(50)) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    return Ok(line);
                }
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {}
                Err(_) => {
                    let exited = self.child.try_wait().ok().flatten();
                    self.kill();
                    let stderr = self
                        .stderr
                        .take()
                        .and_then(|handle| handle.join().ok())
                        .unwrap_or_default();
                    let said = stderr.trim();
                    let said = if said.is_empty() {
                        String::new()
                    } else {
                        format!(": {said}")
                    };
                    return Err(LabError::NotReady {
                        what: self.what.clone(),
                        detail: match exited {
                            Some(status) => format!("it exited ({status}){said}"),
                            None => format!("no output in {}s{said}", timeout.as_secs()),
                        },
                    });
                }
            }
        }
    }

    /// SIGTERM, then every stdout line (including those already seen) once it exits (SIGKILL after `grace`).
    pub fn terminate(mut self, grace: Duration) -> (Vec<String>, String) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32);
        if let Some(pid) = pid {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.kill();
        // The reader ends at EOF, right after the exit; bounded in case something holds the pipe.
        let mut lines = std::mem::take(&mut self.seen);
        let deadline = Instant::now() + Duration::from_secs(1);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => lines.push(line),
                Err(_) => break,
            }
        }
        let stderr = self
            .stderr
            .take()
            .and_then(|handle| handle.join().ok())
            .unwrap_or_default();
        (lines, stderr)
    }

    fn kill(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }

    /// Leaves the process running (for `--keep`).
    pub fn detach(self) {
        std::mem::forget(self);
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What a scenario added inside a namespace that replacing its iptables tables does not remove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Added {
    /// An nftables table (`ip kube-proxy`).
    NftTable(String),
    /// An ipset (by name).
    Ipset(String),
}

/// One run's namespaces and long-lived processes, removed on drop unless kept.
#[derive(Debug)]
pub struct Lab {
    pub names: Names,
    created: Vec<String>,
    procs: Vec<Proc>,
    keep: bool,
    state: Option<PathBuf>,
    /// Per namespace, what the scenario last programmed added beside its iptables tables.
    added: BTreeMap<Host, Vec<Added>>,
}

impl Lab {
    /// Creates every namespace (recording each for cleanup) and builds the topology.
    pub fn create(names: Names) -> LabResult<Lab> {
        let mut lab = Lab {
            names,
            created: Vec::new(),
            procs: Vec::new(),
            keep: false,
            state: None,
            added: BTreeMap::new(),
        };
        let planned = lab.names.all();
        // Recorded before anything exists, so that `--down` finds a half-built lab too.
        lab.state = state::write(&State::new(&lab.names, &planned, false)).ok();
        for ns in planned {
            check_interrupt()?;
            run(
                &["ip".into(), "netns".into(), "add".into(), ns.clone()],
                None,
            )?;
            lab.created.push(ns);
        }
        for cmd in build_commands(&lab.names) {
            check_interrupt()?;
            run(&cmd, None)?;
        }
        Ok(lab)
    }

    pub fn ns(&self, host: Host) -> String {
        self.names.ns(host)
    }

    /// Replaces the tables named in `rules` inside `host`'s namespace.
    pub fn restore(&self, host: Host, rules: &str) -> LabResult<()> {
        self.restore_with(host, rules, false)
    }

    /// `iptables-restore` inside `host`'s namespace: replacing the tables named in `rules`, or
    /// with `add` adding to them (`--noflush`).
    pub fn restore_with(&self, host: Host, rules: &str, add: bool) -> LabResult<()> {
        let mut args = vec!["-w".to_string(), "5".into()];
        if add {
            args.push("--noflush".into());
        }
        self.run_with_input(host, "iptables-restore", &args, Some(rules))
            .map(|_| ())
    }

    /// `nft -f -` with `script` inside `host`'s namespace.
    pub fn nft(&self, host: Host, script: &str) -> LabResult<()> {
        self.run_with_input(host, "nft", &["-f".into(), "-".into()], Some(script))
            .map(|_| ())
    }

    /// `PROGRAM ARGS…` inside `host`'s namespace.
    pub fn run_in(&self, host: Host, program: &str, args: &[String]) -> LabResult<()> {
        self.run_with_input(host, program, args, None).map(|_| ())
    }

    /// `PROGRAM ARGS…` inside `host`'s namespace; its stdout.
    pub fn output_of(&self, host: Host, program: &str, args: &[&str]) -> LabResult<String> {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        self.run_with_input(host, program, &args, None)
    }

    fn run_with_input(
        &self,
        host: Host,
        program: &str,
        args: &[String],
        input: Option<&str>,
    ) -> LabResult<String> {
        let mut argv = vec![
            "ip".to_string(),
            "netns".into(),
            "exec".into(),
            self.ns(host),
            program.into(),
        ];
        argv.extend(args.iter().cloned());
        run(&argv, input)
    }

    /// What the last scenario added in `host`'s namespace beside its iptables tables.
    pub fn take_added(&mut self, host: Host) -> Vec<Added> {
        self.added.remove(&host).unwrap_or_default()
    }

    pub fn note_added(&mut self, host: Host, added: Vec<Added>) {
        if !added.is_empty() {
            self.added.insert(host, added);
        }
    }

    /// Starts a process that lives as long as the lab.
    pub fn start(&mut self, proc: Proc) {
        self.procs.push(proc);
    }

    /// Leave everything up: namespaces, their processes, the state file for `--down`.
    pub fn keep(mut self) -> Vec<String> {
        self.keep = true;
        // Its processes (echo servers, proxies) live in its namespaces: `--down` finds them there.
        let _ = state::write(&State::new(&self.names, &self.created, true));
        for proc in std::mem::take(&mut self.procs) {
            proc.detach();
        }
        self.created.clone()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        for proc in std::mem::take(&mut self.procs) {
            drop(proc);
        }
        remove_namespaces(&self.created);
        if let Some(path) = &self.state {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Kills whatever still runs in the namespaces (only the lab's own processes live there), then
/// deletes them. Best effort: keeps going past errors, reports what is left.
pub fn remove_namespaces(namespaces: &[String]) -> Vec<String> {
    let mut left = Vec::new();
    for ns in namespaces {
        if let Ok(pids) = run(
            &["ip".into(), "netns".into(), "pids".into(), ns.clone()],
            None,
        ) {
            for pid in pids
                .split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok())
            {
                if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                }
            }
        }
        if run(
            &["ip".into(), "netns".into(), "del".into(), ns.clone()],
            None,
        )
        .is_err()
            && std::path::Path::new("/run/netns").join(ns).exists()
        {
            left.push(ns.clone());
        }
    }
    left
}
