//! The netns lab: a mini cluster dataplane with kube-proxy-shaped rules, measured for real.
//!
//! Pure core: the topology ([`topology`]), kube-proxy's rules ([`kube_proxy`]), the load
//! balancer ([`clb`]), the scenarios ([`scenario`]), the verdicts ([`verdict`]) and what is
//! printed ([`render`]). Thin adapter: namespaces, commands and processes ([`netns`],
//! [`capture`], [`driver`]), signals ([`interrupt`]), the record of kept labs ([`state`]), and the
//! sockets run inside the namespaces ([`net`]).

pub mod capture;
pub mod cause;
pub mod clb;
pub mod dataplane;
pub mod driver;
pub mod installed;
pub mod interrupt;
pub mod kube_proxy;
pub mod kube_proxy_nft;
pub mod net;
pub mod netns;
pub mod partial;
pub mod render;
pub mod scenario;
pub mod state;
pub mod topology;
pub mod verdict;
pub mod view;

use crate::error::{Failure, Kind, Result};
use driver::{ScenarioRun, Tools};
use netns::{Lab, LabError};
use scenario::Scenario;
use std::io::IsTerminal;
use std::path::Path;
use topology::{Host, Names};

/// Builds the lab, runs the scenarios; the lab is removed when this returns, unless kept.
pub fn execute(
    names: &Names,
    scenarios: &[Scenario],
    tools: &Tools,
    keep: bool,
) -> Result<(Vec<ScenarioRun>, Option<Vec<String>>), LabError> {
    let progress = std::io::stderr().is_terminal();
    if progress {
        eprintln!("building the lab ({}*)…", names.prefix());
    }
    let mut lab = Lab::create(names.clone())?;
    let mut runs = Vec::new();
    let outcome = driver::start_backends(&mut lab, tools).and_then(|()| {
        for (i, scenario) in scenarios.iter().enumerate() {
            if progress {
                eprintln!("[{}/{}] {}", i + 1, scenarios.len(), scenario.name);
            }
            let last = i + 1 == scenarios.len();
            runs.push(driver::run_scenario(
                &mut lab,
                tools,
                scenario,
                keep && last,
            )?);
        }
        Ok(())
    });
    match outcome {
        // With --keep a failed lab stays up too, to look into; an interrupted one never does.
        Err(err) if keep && !matches!(err, LabError::Interrupted) && !interrupt::interrupted() => {
            lab.keep();
            Err(err)
        }
        Err(err) => Err(err),
        Ok(()) => {
            let kept = keep.then(|| lab.keep());
            Ok((runs, kept))
        }
    }
}

/// A short id for this run's names: two runs at once never collide.
pub fn run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{:04x}",
        (std::process::id() ^ nanos.rotate_left(7)) & 0xffff
    )
}

/// Root, iproute2, iptables and sysctl are needed, and nft and ipset by the scenarios that use
/// them; say which package provides what is missing.
pub fn preflight(scenarios: &[Scenario]) -> Result<()> {
    if !rustix::process::geteuid().is_root() {
        return Err(Failure::new(
            Kind::Probe,
            "the lab needs root: it creates network namespaces and netfilter rules",
        )
        .hint("run it as root, e.g. `sudo ./target/release/kubectl-realip lab`"));
    }
    let mut tools = vec![
        ("ip", "iproute2"),
        ("iptables-restore", "iptables"),
        ("iptables-save", "iptables"),
        ("sysctl", "procps"),
    ];
    if scenarios
        .iter()
        .any(|s| s.dataplane.proxy == dataplane::ProxyMode::Nftables)
    {
        tools.push(("nft", "nftables"));
    }
    if scenarios
        .iter()
        .any(|s| s.dataplane.cni_masquerade.is_some())
    {
        tools.push(("ipset", "ipset"));
    }
    for (tool, package) in tools {
        if !on_path(tool) {
            return Err(Failure::new(
                Kind::Probe,
                format!("the lab needs `{tool}`, which is not on PATH"),
            )
            .hint(format!("install it: apt-get install {package}")));
        }
    }
    if !Path::new("/proc/self/ns/net").exists() {
        return Err(Failure::new(
            Kind::Probe,
            "this kernel has no network namespaces",
        ));
    }
    Ok(())
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
}

/// The command that removes labs of `names`' prefix.
pub fn down_command(names: &Names) -> String {
    if names.ns_prefix() == topology::NS_PREFIX {
        "kubectl realip lab --down".to_string()
    } else {
        format!(
            "kubectl realip lab --down --ns-prefix {}",
            names.ns_prefix()
        )
    }
}

/// `--down`: removes every kept lab of this namespace prefix, and its labs whose run died.
/// Labs of other prefixes (a test's, or a user's when a test runs it) are left alone.
pub fn down(prefix: &str) -> Result<()> {
    let mut removed = 0;
    let mut left = Vec::new();
    for (path, state) in state::read_all() {
        if !down_removes(&state, prefix) {
            continue;
        }
        let still = netns::remove_namespaces(&state.namespaces);
        removed += state.namespaces.len() - still.len();
        if still.is_empty() {
            let _ = std::fs::remove_file(path);
        }
        left.extend(still);
    }
    if left.is_empty() {
        emit(&format!("removed {removed} lab namespaces\n"))
    } else {
        Err(Failure::new(
            Kind::Probe,
            format!("could not remove: {}", left.join(", ")),
        )
        .hint("remove them by hand with `ip netns del NAME`"))
    }
}

/// Whether `lab --down` under `prefix` removes the lab `state` records.
fn down_removes(state: &state::State, prefix: &str) -> bool {
    state.prefix == prefix && state.removable()
}

/// `--rules`: what each scenario loads (`iptables-restore`, `nft -f`, `ipset`, `ip route`),
/// namespace by namespace.
pub fn rules_text(scenarios: &[Scenario]) -> Result<String, scenario::ModelError> {
    let mut out = String::new();
    for s in scenarios {
        let services = s.services()?;
        out.push_str(&format!("### {}: {}\n", s.name, s.title));
        out.push_str("# load balancer (clb)\n");
        out.push_str(&clb::rules(&s.listeners));
        for node in topology::Node::ALL {
            for step in driver::node_setup(s, &services, node) {
                out.push_str(&format!("# {node} ({})\n", step.what()));
                out.push_str(&step.text());
            }
        }
        out.push('\n');
    }
    Ok(out)
}

pub fn list_text() -> String {
    let mut out = String::new();
    for s in scenario::all() {
        out.push_str(&format!("{:<22} {}\n", s.name, s.title));
    }
    out
}

pub fn keep_text(names: &Names, namespaces: &[String]) -> String {
    let client = names.ns(Host::Client);
    let node = names.ns(Host::Node(topology::Node::A));
    format!(
        "the lab is still up ({} namespaces: {}*). Step in with, for example:\n  \
         ip netns exec {client} {me} lab-net get --to {vip}:80\n  \
         ip netns exec {node} iptables-save -t nat\n  \
         ip netns exec {node} bash\n\
         remove it with: {down}",
        namespaces.len(),
        names.prefix(),
        down = down_command(names),
        me = std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "kubectl-realip".into()),
        vip = topology::VIP,
    )
}

/// `--save DIR`: each scenario's probe events as JSONL, replayable with `kubectl realip analyze`,
/// and the partial captures the lab judged too (`NAME.no-lb.jsonl`, `NAME.uplinks.jsonl`).
pub fn save(dir: &Path, runs: &[ScenarioRun]) -> Result<()> {
    let fail = |err: std::io::Error| {
        Failure::usage(format!("cannot write to {}: {err}", dir.display()))
            .hint("pass a writable directory to --save")
    };
    std::fs::create_dir_all(dir).map_err(fail)?;
    for run in runs {
        let name = run.scenario.name;
        std::fs::write(dir.join(format!("{name}.jsonl")), jsonl(&run.events)).map_err(fail)?;
        for variant in partial::Variant::ALL {
            if let Some(events) = variant.events(&run.events, "clb") {
                let file = dir.join(format!("{name}.{}.jsonl", variant.name()));
                std::fs::write(file, jsonl(&events)).map_err(fail)?;
            }
        }
    }
    Ok(())
}

/// Events in time order, as analyze reads a merged stream: the probes' streams interleaved.
fn jsonl(events: &[realip_probe::wire::Event]) -> String {
    let mut events: Vec<&realip_probe::wire::Event> = events.iter().collect();
    events.sort_by_key(|event| event.ts_ns().unwrap_or(0));
    let mut text = String::new();
    for event in events {
        text.push_str(&realip_probe::wire::encode_line(event));
        text.push('\n');
    }
    text
}

pub fn emit(text: &str) -> Result<()> {
    crate::output::emit(text)
        .map_err(|err| Failure::new(Kind::Usage, format!("writing to stdout: {err}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--down` run by a test (its own prefix) never takes a lab a user left up, nor the
    /// reverse; a lab still being built by a live run is left to it.
    #[test]
    fn down_removes_only_kept_labs_of_its_own_prefix() {
        let user = state::State::new(&Names::new("ab12"), &[], true);
        let test = state::State::new(&Names::with_prefix("riplt-", "ab12"), &[], true);
        assert!(down_removes(&user, "rip-"));
        assert!(!down_removes(&user, "riplt-"));
        assert!(down_removes(&test, "riplt-"));
        assert!(!down_removes(&test, "rip-"));
        let building = state::State::new(&Names::new("cd34"), &[], false);
        assert!(!down_removes(&building, "rip-"));
        assert_eq!(
            down_command(&Names::with_prefix("riplt-", "ab12")),
            "kubectl realip lab --down --ns-prefix riplt-"
        );
        assert_eq!(
            down_command(&Names::new("ab12")),
            "kubectl realip lab --down"
        );
    }

    /// The rules of every scenario, as `--rules` prints them (and as the docs show them).
    #[test]
    fn rules_of_every_scenario_snapshot() {
        for s in scenario::all() {
            insta::assert_snapshot!(s.name, rules_text(std::slice::from_ref(&s)).unwrap());
        }
    }
}
