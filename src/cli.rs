//! The command line, and nothing else: clap derive types that `run` turns into work.

use clap::{Args, Parser, Subcommand};

/// The URL of a page of the repository's docs/: what a krew user, who has no checkout, can
/// open (the repository is Cargo.toml's).
#[macro_export]
macro_rules! doc_url {
    ($page:literal) => {
        concat!(env!("CARGO_PKG_REPOSITORY"), "/blob/main/docs/", $page)
    };
}
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "kubectl-realip",
    bin_name = "kubectl realip",
    version,
    about = "Find where SNAT rewrote your client's IP on the way to a pod",
    long_about = "Find where SNAT rewrote your client's IP on the way to a pod.\n\n\
        kubectl realip follows each TCP SYN hop by hop (load balancer, node, node, pod) and shows \
        which hop rewrote the source address, into what, why, and what to change.",
    propagate_version = true
)]
pub struct Cli {
    /// More logging on stderr (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the probe on a Service's nodes, capture real connections, and show every rewrite.
    Trace(TraceArgs),
    /// Predict from configuration what source address the pod sees, and why.
    Explain(ExplainArgs),
    /// Analyze probe JSON lines or pcap/pcapng captures made elsewhere.
    Analyze(AnalyzeArgs),
    /// Build a mini cluster dataplane in network namespaces and measure every scenario (root).
    Lab(LabArgs),
    /// Remove every leftover probe of every run.
    Cleanup(CleanupArgs),
    /// Print shell completion code (bash, zsh, fish, elvish, powershell).
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the version of the plugin and the node architectures of the probe it carries.
    Version,
    /// Lab plumbing run inside the lab's namespaces: a test client and an L7 proxy.
    #[command(name = "lab-net", hide = true)]
    LabNet(LabNetArgs),
}

pub use crate::lab::net::XffMode;
pub use realip_core::output::OutputFormat;

/// `--xff append|replace`.
fn parse_xff(value: &str) -> Result<XffMode, String> {
    [XffMode::Append, XffMode::Replace]
        .into_iter()
        .find(|mode| mode.name() == value)
        .ok_or_else(|| format!("{value:?} is not append nor replace"))
}

/// `-o NAME`: the core's output formats, with their help, as clap offers enum values.
#[derive(Clone, Debug)]
pub struct OutputFormatParser;

impl clap::builder::TypedValueParser for OutputFormatParser {
    type Value = OutputFormat;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<OutputFormat, clap::Error> {
        let names = OutputFormat::ALL.map(OutputFormat::name);
        let name = clap::builder::PossibleValuesParser::new(names).parse_ref(cmd, arg, value)?;
        // The parser above admits only the names of ALL.
        Ok(OutputFormat::ALL
            .into_iter()
            .find(|format| format.name() == name)
            .unwrap_or_default())
    }

    fn possible_values(
        &self,
    ) -> Option<Box<dyn Iterator<Item = clap::builder::PossibleValue> + '_>> {
        Some(Box::new(OutputFormat::ALL.into_iter().map(|format| {
            clap::builder::PossibleValue::new(format.name()).help(format.help())
        })))
    }
}

/// The kubectl flags every cluster command accepts, with kubectl's meaning.
#[derive(Args, Debug, Clone, Default)]
pub struct KubeArgs {
    /// Path to the kubeconfig file to use.
    #[arg(long, env = "KUBECONFIG", value_name = "PATH", hide_env = true)]
    pub kubeconfig: Option<PathBuf>,
    /// The name of the kubeconfig context to use.
    #[arg(long)]
    pub context: Option<String>,
    /// The name of the kubeconfig cluster to use.
    #[arg(long)]
    pub cluster: Option<String>,
    /// The name of the kubeconfig user to use.
    #[arg(long)]
    pub user: Option<String>,
    /// The namespace of the target (default: the context's namespace).
    #[arg(short, long)]
    pub namespace: Option<String>,
    /// Username to impersonate.
    #[arg(long = "as", value_name = "USER")]
    pub as_user: Option<String>,
    /// Group to impersonate (repeatable).
    #[arg(long = "as-group", value_name = "GROUP")]
    pub as_group: Vec<String>,
    /// UID to impersonate.
    #[arg(long = "as-uid", value_name = "UID")]
    pub as_uid: Option<String>,
    /// Timeout of a single API request (e.g. 10s, 1m; default 60s; 0 = none of its own), and
    /// of connecting when shorter than 30s. Never applied to watches or log follows.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub request_timeout: Option<Duration>,
}

impl KubeArgs {
    /// What the flags say of the cluster connection, for the cluster adapter.
    pub fn connection(&self) -> crate::cluster::Connection {
        crate::cluster::Connection {
            kubeconfig: self.kubeconfig.clone(),
            context: self.context.clone(),
            cluster: self.cluster.clone(),
            user: self.user.clone(),
            namespace: self.namespace.clone(),
            as_user: self.as_user.clone(),
            as_group: self.as_group.clone(),
            as_uid: self.as_uid.clone(),
            request_timeout: self.request_timeout,
        }
    }
}

#[derive(Args, Debug, Clone)]
#[command(
    after_help = concat!("Exit codes: 0 report with at least one connection (or --dry-run); \
    1 no connection seen; 2 bad flags or an unusable kubeconfig/context; 3 the cluster refused \
    or failed (RBAC, Pod Security, missing Service, unreachable or silent API); 4 no probe could \
    start (image pull, scheduling); 130 interrupted, after removing the probe.\n\
    First run on a cluster: ", doc_url!("first-cluster.md"), "\n\
    Needed permissions: ", doc_url!("rbac.md"), ". Leftovers of a killed run expire by \
    themselves (kubectl-realip/expires-at) or go with `kubectl realip cleanup`.")
)]
pub struct TraceArgs {
    /// The Service to trace: svc/NAME, service/NAME or services/NAME.
    #[arg(value_name = "svc/NAME")]
    pub target: String,
    #[command(flatten)]
    pub kube: KubeArgs,
    /// How long to capture (e.g. 30s, 2m; at least 1s).
    #[arg(long, default_value = "30s", value_parser = parse_capture_duration)]
    pub duration: Duration,
    /// Stop once this many connections have been seen end to end (at least 1).
    #[arg(long, value_name = "N", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub flows: Option<usize>,
    /// Stop once this many SYN sightings came in from all probes: a busy Service is told from
    /// its first connections, in bounded memory.
    #[arg(long, value_name = "N", default_value_t = 200_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_syns: u64,
    /// Open test connections (TCP and an HTTP GET with a unique token) to every entry point.
    #[arg(long)]
    pub send: bool,
    /// With --send: only these entry points (ADDR:PORT or HOST:PORT, an IPv6 ADDR in
    /// brackets; repeatable).
    #[arg(long = "send-to", value_name = "ADDR:PORT", value_parser = parse_entry_point)]
    pub send_to: Vec<String>,
    /// Read forwarding headers (X-Forwarded-For, X-Real-IP, Forwarded, PROXY) of first data segments.
    #[arg(long)]
    pub l7: bool,
    /// Also name the netfilter rule behind each rewrite: the probes read each node's NAT rules,
    /// conntrack entries and routes (read-only), which adds NET_ADMIN to the probe container.
    #[arg(long)]
    pub evidence: bool,
    /// Run this prebuilt probe image instead of delivering the probe this plugin carries.
    #[arg(long, value_name = "IMAGE")]
    pub image: Option<String>,
    /// Namespace for the probe DaemonSet (default: the Service's).
    #[arg(long, value_name = "NS")]
    pub probe_namespace: Option<String>,
    /// Label the probe namespace pod-security.kubernetes.io/enforce=privileged if it must be.
    #[arg(long)]
    pub label_namespace_privileged: bool,
    /// Only probe nodes matching this label selector (endpoint nodes are always probed).
    #[arg(long, value_name = "SELECTOR")]
    pub nodes: Option<String>,
    /// Probe at most this many nodes besides the endpoint nodes.
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub max_nodes: usize,
    /// Print the objects that would be created as YAML and create nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// How long to wait for the probes to start (image pulls included).
    #[arg(long, default_value = "2m", value_parser = parse_duration, value_name = "DURATION")]
    pub ready_timeout: Duration,
    /// Stock image that unpacks and starts the carried probe, and runs the expiry timer
    /// (needs sh, cat, gunzip, date, sleep).
    #[arg(long, default_value = "busybox:1.37", value_name = "IMAGE")]
    pub base_image: String,
    #[arg(short, long, value_parser = OutputFormatParser, default_value = "text")]
    pub output: OutputFormat,
}

impl TraceArgs {
    /// What the flags ask of trace.
    pub fn request(&self) -> crate::trace::Request {
        crate::trace::Request {
            target: self.target.clone(),
            connection: self.kube.connection(),
            duration: self.duration,
            flows: self.flows,
            max_syns: self.max_syns,
            send: self.send,
            send_to: self.send_to.clone(),
            l7: self.l7,
            evidence: self.evidence,
            image: self.image.clone(),
            probe_namespace: self.probe_namespace.clone(),
            label_namespace_privileged: self.label_namespace_privileged,
            nodes: self.nodes.clone(),
            max_nodes: self.max_nodes,
            dry_run: self.dry_run,
            ready_timeout: self.ready_timeout,
            base_image: self.base_image.clone(),
            output: self.output,
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct ExplainArgs {
    /// The Service to explain from the live cluster: svc/NAME.
    #[arg(
        value_name = "svc/NAME",
        required_unless_present = "filename",
        conflicts_with = "filename"
    )]
    pub target: Option<String>,
    /// Explain offline from manifests (multi-document YAML; repeatable; - for stdin).
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub filename: Vec<PathBuf>,
    /// Predict for connections entering at this node (decides node IP vs bridge IP).
    #[arg(long, value_name = "NODE")]
    pub entry_node: Option<String>,
    #[command(flatten)]
    pub kube: KubeArgs,
    #[arg(short, long, value_parser = OutputFormatParser, default_value = "text")]
    pub output: OutputFormat,
}

#[derive(Args, Debug, Clone)]
#[command(
    after_help = concat!("Exit codes: 0 every input read and a connection found; 1 partial answer \
(lines or frames skipped, or no SYN found); 2 an input could not be used (missing, unreadable, \
unknown format or link type, or two capture files naming one node). See ", doc_url!("analyze.md"), ".")
)]
pub struct AnalyzeArgs {
    /// Probe JSONL, pcap or pcapng files (- for stdin, any of the three).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    #[arg(short, long, value_parser = OutputFormatParser, default_value = "text")]
    pub output: OutputFormat,
    /// How far apart one connection's sightings may be: room for SYN retransmissions and for
    /// clock skew between nodes. A connection is reported once the input has moved this far past
    /// it; memory grows with the SYNs inside the window, not with the capture.
    #[arg(long, default_value = "3m", value_parser = parse_duration, value_name = "DURATION")]
    pub window: Duration,
}

#[derive(Args, Debug, Clone)]
pub struct LabArgs {
    /// Which scenarios to run (see --list): names separated by commas or the flag given again,
    /// or all.
    #[arg(
        long,
        default_value = "all",
        value_name = "NAME",
        value_delimiter = ','
    )]
    pub scenario: Vec<String>,
    /// List the scenarios and exit.
    #[arg(long)]
    pub list: bool,
    /// Print the netfilter rules the scenarios program (load balancer, each node) and exit.
    #[arg(long, conflicts_with_all = ["list", "keep", "down"])]
    pub rules: bool,
    /// Leave the namespaces up and print how to step into them.
    #[arg(long)]
    pub keep: bool,
    /// Remove a lab left up by --keep.
    #[arg(long, conflicts_with_all = ["keep", "list"])]
    pub down: bool,
    /// Also write each scenario's probe events to DIR/SCENARIO.jsonl (for `kubectl realip analyze`).
    #[arg(long, value_name = "DIR")]
    pub save: Option<PathBuf>,
    /// The realip-probe binary to run in the lab (default: the one this plugin carries).
    #[arg(long, value_name = "PATH", env = "REALIP_PROBE_BIN", hide_env = true)]
    pub probe: Option<PathBuf>,
    /// Name the lab's network namespaces PREFIX… instead of rip-…; --down then removes only
    /// labs of that prefix. For tests, which must never touch a lab a user left up.
    #[arg(long, value_name = "PREFIX", default_value = crate::lab::topology::NS_PREFIX,
          value_parser = parse_ns_prefix, hide = true)]
    pub ns_prefix: String,
    #[arg(short, long, value_parser = OutputFormatParser, default_value = "text")]
    pub output: OutputFormat,
}

/// A namespace prefix: short lowercase letters and digits, ending in `-`.
fn parse_ns_prefix(text: &str) -> Result<String, String> {
    let body = text
        .strip_suffix('-')
        .ok_or_else(|| format!("{text:?} must end with '-' (e.g. riptest-)"))?;
    let fits = (1..=12).contains(&body.len())
        && body
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if fits {
        Ok(text.to_string())
    } else {
        Err(format!(
            "{text:?} is not a namespace prefix: 1 to 12 lowercase letters or digits, then '-'"
        ))
    }
}

/// `lab-net`: what the lab runs inside its namespaces (not for direct use).
#[derive(Args, Debug, Clone)]
pub struct LabNetArgs {
    #[command(subcommand)]
    pub action: LabNetAction,
}

#[derive(Subcommand, Debug, Clone)]
pub enum LabNetAction {
    /// Send one HTTP GET and print what came back as one JSON line.
    Get {
        #[arg(long, value_name = "ADDR:PORT")]
        to: std::net::SocketAddr,
        /// Give up on a connection (or a reply) after this many milliseconds.
        #[arg(long, default_value_t = 2000, value_name = "MS")]
        timeout_ms: u64,
        /// Retry refused connections for up to this many milliseconds (waiting for a server).
        #[arg(long, default_value_t = 0, value_name = "MS")]
        wait_ms: u64,
    },
    /// Forward HTTP/1.1 to one upstream, adding X-Forwarded-For and X-Real-IP like an L7 proxy.
    Proxy {
        #[arg(long, value_name = "ADDR:PORT")]
        listen: std::net::SocketAddr,
        #[arg(long, value_name = "ADDR:PORT")]
        to: std::net::SocketAddr,
        #[arg(long, value_parser = parse_xff)]
        xff: XffMode,
    },
}

#[derive(Args, Debug, Clone)]
#[command(
    after_help = "Finds every object labelled app.kubernetes.io/managed-by=kubectl-realip \
    in every namespace (expiry Jobs, probe DaemonSets and pods, probe ConfigMaps) and deletes it; \
    deletes a namespace only if a run created it.\n\
    Exit codes: 0 nothing left; 3 something could not be listed or removed."
)]
pub struct CleanupArgs {
    #[command(flatten)]
    pub kube: KubeArgs,
    /// Only show what would be removed.
    #[arg(long)]
    pub dry_run: bool,
}

/// Parses `30s`, `2m`, `1h`, `500ms` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (try 30s, 2m, 1h)"))?;
    let seconds = match unit {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => {
            return Err(format!(
                "unknown unit {unit:?} in {text:?} (use ms, s, m or h)"
            ))
        }
    };
    if !seconds.is_finite() || !(0.0..=1e9).contains(&seconds) {
        return Err(format!("{text:?} is out of range"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// A capture length: a duration of at least one second.
pub fn parse_capture_duration(text: &str) -> Result<Duration, String> {
    let duration = parse_duration(text)?;
    if duration < Duration::from_secs(1) {
        return Err(format!(
            "{text:?} is too short to capture anything: give at least 1s"
        ));
    }
    Ok(duration)
}

/// `ADDR:PORT`, `HOST:PORT` or `[IPv6]:PORT`: where a test connection goes, port included.
pub fn parse_entry_point(text: &str) -> Result<String, String> {
    let text = text.trim();
    if let Ok(addr) = text.parse::<std::net::SocketAddr>() {
        return match addr.port() {
            0 => Err(format!("{text:?}: port 0 is not a port to connect to")),
            _ => Ok(text.to_string()),
        };
    }
    if text.parse::<std::net::IpAddr>().is_ok() {
        return Err(format!(
            "{text:?} has no port: give ADDR:PORT (an IPv6 address as [ADDR]:PORT)"
        ));
    }
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(format!(
            "{text:?} has no port: give ADDR:PORT, e.g. 203.0.113.10:80"
        ));
    };
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    if !host_ok {
        return Err(format!(
            "{text:?} is not ADDR:PORT (an IPv6 address goes in brackets: [2001:db8::1]:80)"
        ));
    }
    match port.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("{text:?}: {port:?} is not a port (1-65535)")),
        Ok(_) => Ok(text.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_analyze_window_defaults_to_the_library_one() {
        use clap::Parser;
        let args = Cli::try_parse_from(["kubectl-realip", "analyze", "x.jsonl"]).unwrap();
        let Command::Analyze(args) = args.command else {
            panic!("not analyze");
        };
        assert_eq!(args.window, crate::analyze::WINDOW);
    }
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    /// Hints and help point at pages a krew user can open, and the pages exist.
    #[test]
    fn doc_urls_name_pages_that_exist() {
        assert_eq!(
            crate::doc_url!("rbac.md"),
            "https://github.com/kubectl-realip/kubectl-realip/blob/main/docs/rbac.md"
        );
        assert_eq!(crate::cluster::RBAC_DOC, crate::doc_url!("rbac.md"));
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut pending = vec![root.join("src")];
        let mut pages = Vec::new();
        while let Some(dir) = pending.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    pending.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    for piece in text.split("doc_url!(\"").skip(1) {
                        if let Some((page, _)) = piece.split_once('"') {
                            pages.push(page.to_string());
                        }
                    }
                }
            }
        }
        assert!(pages.len() >= 4, "{pages:?}");
        for page in &pages {
            assert!(
                root.join("docs").join(page).is_file(),
                "docs/{page} is missing"
            );
        }
    }

    #[test]
    fn namespace_prefixes() {
        assert_eq!(parse_ns_prefix("riplt-"), Ok("riplt-".to_string()));
        assert!(parse_ns_prefix("rip").is_err());
        assert!(parse_ns_prefix("-").is_err());
        assert!(parse_ns_prefix("a/b-").is_err());
        assert!(parse_ns_prefix("Upper-").is_err());
        assert!(parse_ns_prefix("muchtoolongprefix-").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5d").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn capture_durations_are_at_least_a_second() {
        assert_eq!(parse_capture_duration("1s"), Ok(Duration::from_secs(1)));
        for too_short in ["0", "0s", "999ms"] {
            let err = parse_capture_duration(too_short).unwrap_err();
            assert!(err.contains("at least 1s"), "{err}");
        }
    }

    #[test]
    fn entry_points_need_a_port() {
        for good in [
            "203.0.113.10:80",
            "[2001:db8::1]:443",
            "lb.example.com:8080",
            "node-a:31080",
        ] {
            assert_eq!(parse_entry_point(good).as_deref(), Ok(good));
        }
        for (bad, says) in [
            ("203.0.113.10", "has no port"),
            ("2001:db8::1", "has no port"),
            ("lb.example.com", "has no port"),
            ("203.0.113.10:0", "port 0"),
            ("lb.example.com:http", "is not a port"),
            ("lb.example.com:70000", "is not a port"),
            (":80", "is not ADDR:PORT"),
            ("2001:db8::1:80", "[ADDR]:PORT"),
            ("fe80::1%eth0", "brackets"),
        ] {
            let err = parse_entry_point(bad).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn zero_flows_is_refused_by_the_parser() {
        let parse = |flows: &str| {
            Cli::try_parse_from(["kubectl-realip", "trace", "svc/web", "--flows", flows])
        };
        assert!(parse("0").is_err());
        assert!(parse("1").is_ok());
    }
}
