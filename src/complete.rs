//! Shell completion: kubectl's plugin completion protocol (Cobra's `__complete` line format)
//! and the scripts `kubectl realip completion SHELL` prints.
//!
//! kubectl runs an executable named `kubectl_complete-realip` with the words typed after
//! `kubectl realip`, the last being the word under the cursor (possibly empty). The answer is one
//! candidate a line (`value<TAB>description`), then `:<directive>`: 4 (no file completion) or
//! 0 (let the shell complete file names, for `-f` and `analyze FILE`).
//!
//! Flags and subcommands come from the command tree; what only the cluster knows (Services for
//! `svc/NAME`, namespaces for `-n`) and what only the kubeconfig knows (contexts) comes from a
//! [`Lookup`]: [`Live`] asks the cluster and the kubeconfig the other flags on the line name, as
//! kubectl completes resource names. Hidden commands and flags are never offered.

use crate::cli::{parse_duration, KubeArgs};
use clap::{Arg, Command};
use std::time::Duration;

/// The name kubectl looks for on PATH.
pub const COMPLETE_EXE: &str = "kubectl_complete-realip";

const NO_FILE_COMP: u8 = 4;
const DEFAULT_COMP: u8 = 0;

/// Values that only the cluster or the kubeconfig know. An answer that cannot be had (no
/// cluster, a refusal, a timeout) is simply no candidates: completion never fails.
pub trait Lookup {
    /// Names of the Services in `kube`'s namespace (`-n`, else the context's).
    fn services(&self, kube: &KubeArgs) -> Vec<String>;
    /// Names of the namespaces.
    fn namespaces(&self, kube: &KubeArgs) -> Vec<String>;
    /// Names of the kubeconfig's contexts.
    fn contexts(&self, kube: &KubeArgs) -> Vec<String>;
}

/// What the word under the cursor is a value of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Value {
    Service,
    Namespace,
    Context,
    Scenario,
    /// A file or directory: left to the shell.
    Path,
    /// The argument's own possible values (e.g. `-o`), or nothing to offer.
    Listed,
}

/// Completes `words` (the last is the partial word) against the command tree.
pub fn complete(root: &Command, words: &[String], lookup: &dyn Lookup) -> String {
    let (partial, done) = match words.split_last() {
        Some((last, rest)) => (last.as_str(), rest),
        None => ("", &[][..]),
    };
    let mut line = Line::new(root);
    let mut pending: Option<&Arg> = None;
    for word in done {
        if let Some(arg) = pending.take() {
            line.value(arg, word);
            continue;
        }
        if let Some((arg, inline)) = flag(line.cmd, word) {
            match inline {
                Some(value) => line.value(arg, value),
                None if arg.get_action().takes_values() => pending = Some(arg),
                None => {}
            }
        } else if let Some(sub) = line.cmd.find_subcommand(word) {
            line.cmd = sub;
            line.positionals = 0;
        } else if word == "-" || !word.starts_with('-') {
            // A positional value (`-` is stdin); an unknown flag is not one.
            line.positionals += 1;
        }
    }
    let cmd = line.cmd;

    let mut answer = Answer::default();
    if let Some(arg) = pending {
        answer.values(cmd, arg, "", partial, &line.kube, lookup);
    } else if let Some((name, value)) = partial
        .strip_prefix("--")
        .and_then(|flag| flag.split_once('='))
    {
        // `--namespace=sh`: the value, offered with its flag.
        if let Some(arg) = cmd.get_arguments().find(|a| a.get_long() == Some(name)) {
            answer.values(cmd, arg, &format!("--{name}="), value, &line.kube, lookup);
        }
    } else if partial.starts_with('-') {
        for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
            if let Some(long) = arg.get_long() {
                let word = format!("--{long}");
                if word.starts_with(partial) {
                    answer.lines.push(candidate(&word, arg.get_help()));
                }
            }
        }
    } else if cmd.has_subcommands() {
        for sub in visible_subcommands(cmd) {
            if sub.get_name().starts_with(partial) {
                answer
                    .lines
                    .push(candidate(sub.get_name(), sub.get_about()));
            }
        }
    } else if let Some(arg) = cmd
        .get_positionals()
        .filter(|a| !a.is_hide_set())
        .nth(line.positionals)
        .or_else(|| cmd.get_positionals().last().filter(|a| takes_many(a)))
    {
        answer.values(cmd, arg, "", partial, &line.kube, lookup);
    }
    answer.finish()
}

/// The command line read so far: where it is, and the kubectl flags it gave.
struct Line<'a> {
    cmd: &'a Command,
    /// Positional words given to `cmd`.
    positionals: usize,
    kube: KubeArgs,
}

impl<'a> Line<'a> {
    fn new(root: &'a Command) -> Self {
        Line {
            cmd: root,
            positionals: 0,
            kube: KubeArgs::default(),
        }
    }

    /// Records the kubectl flags, which decide what the cluster is asked.
    fn value(&mut self, arg: &Arg, value: &str) {
        let value = value.to_string();
        let kube = &mut self.kube;
        match arg.get_id().as_str() {
            "kubeconfig" => kube.kubeconfig = Some(value.into()),
            "context" => kube.context = Some(value),
            "cluster" => kube.cluster = Some(value),
            "user" => kube.user = Some(value),
            "namespace" => kube.namespace = Some(value),
            "as_user" => kube.as_user = Some(value),
            "as_group" => kube.as_group.push(value),
            "as_uid" => kube.as_uid = Some(value),
            "request_timeout" => kube.request_timeout = parse_duration(&value).ok(),
            _ => {}
        }
    }
}

#[derive(Default)]
struct Answer {
    lines: Vec<String>,
    files: bool,
}

impl Answer {
    /// Candidates for a value of `arg` starting with `partial`, each written after `prefix`.
    fn values(
        &mut self,
        cmd: &Command,
        arg: &Arg,
        prefix: &str,
        partial: &str,
        kube: &KubeArgs,
        lookup: &dyn Lookup,
    ) {
        let mut offer = |value: &str, help: Option<&clap::builder::StyledStr>| {
            if value.starts_with(partial) {
                self.lines
                    .push(candidate(&format!("{prefix}{value}"), help));
            }
        };
        match value_of(cmd, arg) {
            Value::Service => {
                // `service/` and `services/` are kept when typed; `svc/` otherwise.
                let kind = partial
                    .split_once('/')
                    .map(|(kind, _)| kind)
                    .filter(|kind| ["svc", "service", "services"].contains(kind))
                    .unwrap_or("svc");
                for name in lookup.services(kube) {
                    offer(&format!("{kind}/{name}"), None);
                }
            }
            Value::Namespace => {
                for name in lookup.namespaces(kube) {
                    offer(&name, None);
                }
            }
            Value::Context => {
                for name in lookup.contexts(kube) {
                    offer(&name, None);
                }
            }
            Value::Scenario => {
                offer("all", None);
                for scenario in crate::lab::scenario::all() {
                    offer(scenario.name, None);
                }
            }
            Value::Path => self.files = true,
            Value::Listed => {
                for value in arg.get_possible_values() {
                    if !value.is_hide_set() {
                        offer(value.get_name(), value.get_help());
                    }
                }
            }
        }
    }

    fn finish(mut self) -> String {
        let directive = if self.files {
            DEFAULT_COMP
        } else {
            NO_FILE_COMP
        };
        self.lines.push(format!(":{directive}"));
        let mut out = self.lines.join("\n");
        out.push('\n');
        out
    }
}

fn value_of(cmd: &Command, arg: &Arg) -> Value {
    let id = arg.get_id().as_str();
    let value_name = arg
        .get_value_names()
        .and_then(|names| names.first())
        .map(|name| name.as_str());
    if arg.is_positional() && value_name == Some("svc/NAME") {
        Value::Service
    } else if id == "namespace" || id == "probe_namespace" {
        Value::Namespace
    } else if id == "context" {
        Value::Context
    } else if cmd.get_name() == "lab" && id == "scenario" {
        Value::Scenario
    } else if takes_path(arg) {
        Value::Path
    } else {
        Value::Listed
    }
}

fn visible_subcommands(cmd: &Command) -> impl Iterator<Item = &Command> {
    cmd.get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
}

/// The flag `word` names, with its value when written in the same word (`--output=json`,
/// `-nshop`).
fn flag<'a, 'w>(cmd: &'a Command, word: &'w str) -> Option<(&'a Arg, Option<&'w str>)> {
    if let Some(long) = word.strip_prefix("--") {
        let (name, inline) = match long.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (long, None),
        };
        let arg = cmd.get_arguments().find(|a| a.get_long() == Some(name))?;
        Some((arg, inline))
    } else if let Some(short) = word.strip_prefix('-') {
        let first = short.chars().next()?;
        let arg = cmd.get_arguments().find(|a| a.get_short() == Some(first))?;
        let rest = &short[first.len_utf8()..];
        let inline = (arg.get_action().takes_values() && !rest.is_empty())
            .then(|| rest.strip_prefix('=').unwrap_or(rest));
        Some((arg, inline))
    } else {
        None
    }
}

fn takes_many(arg: &Arg) -> bool {
    arg.get_num_args().is_some_and(|n| n.max_values() > 1)
}

fn takes_path(arg: &Arg) -> bool {
    matches!(
        arg.get_value_hint(),
        clap::ValueHint::FilePath | clap::ValueHint::AnyPath | clap::ValueHint::DirPath
    ) || arg.get_value_names().is_some_and(|names| {
        names
            .iter()
            .any(|n| ["FILE", "PATH", "DIR"].contains(&n.as_str()))
    })
}

fn candidate(value: &str, help: Option<&clap::builder::StyledStr>) -> String {
    match help {
        Some(help) => {
            let help = help.to_string();
            let first = help
                .lines()
                .next()
                .unwrap_or_default()
                .trim_end_matches('.');
            format!("{value}\t{first}")
        }
        None => value.to_string(),
    }
}

/// The command tree as shells may complete it: hidden subcommands and flags left out (the
/// scripts clap_complete writes would offer them otherwise).
pub fn visible(cmd: &Command) -> Command {
    let mut out = Command::new(cmd.get_name().to_string())
        .disable_help_flag(true)
        .disable_version_flag(true)
        .disable_help_subcommand(true)
        .args(cmd.get_arguments().filter(|a| !a.is_hide_set()).cloned())
        .subcommands(visible_subcommands(cmd).map(visible));
    if let Some(about) = cmd.get_about() {
        out = out.about(about.clone());
    }
    if let Some(version) = cmd.get_version() {
        out = out.version(version.to_string());
    }
    out
}

/// `kubectl realip completion SHELL`: the script for the bare `kubectl-realip` binary.
pub fn script(shell: clap_complete::Shell, out: &mut dyn std::io::Write) {
    let mut cmd = <crate::cli::Cli as clap::CommandFactory>::command();
    cmd.build();
    clap_complete::generate(shell, &mut visible(&cmd), "kubectl-realip", out);
}

/// How long a completion may wait for the cluster when `--request-timeout` does not say.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// Asks the cluster and the kubeconfig that the line's kubectl flags name.
#[derive(Debug, Clone, Copy, Default)]
pub struct Live;

impl Live {
    /// Names of the objects one list call returns, or none when it cannot be made.
    fn names<F, Fut>(kube: &KubeArgs, list: F) -> Vec<String>
    where
        F: FnOnce(crate::cluster::Cluster) -> Fut,
        Fut: std::future::Future<Output = Option<Vec<String>>>,
    {
        let mut kube = kube.clone();
        kube.request_timeout.get_or_insert(LOOKUP_TIMEOUT);
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return Vec::new();
        };
        let mut names = runtime
            .block_on(async {
                let clients = crate::cluster::clients(&kube.connection()).await.ok()?;
                list(crate::cluster::Cluster::new(clients)).await
            })
            .unwrap_or_default();
        names.sort();
        names
    }
}

fn name_of<K: ::kube::Resource>(object: &K) -> Option<String> {
    object.meta().name.clone()
}

impl Lookup for Live {
    fn services(&self, kube: &KubeArgs) -> Vec<String> {
        Live::names(kube, |cluster| async move {
            let namespace = cluster.default_namespace().to_string();
            let services = cluster
                .namespaced::<k8s_openapi::api::core::v1::Service>(&namespace)
                .list(None)
                .await
                .ok()?;
            Some(services.iter().filter_map(name_of).collect())
        })
    }

    fn namespaces(&self, kube: &KubeArgs) -> Vec<String> {
        Live::names(kube, |cluster| async move {
            let namespaces = cluster
                .all::<k8s_openapi::api::core::v1::Namespace>()
                .list(None)
                .await
                .ok()?;
            Some(namespaces.iter().filter_map(name_of).collect())
        })
    }

    fn contexts(&self, kube: &KubeArgs) -> Vec<String> {
        let mut names: Vec<String> = crate::cluster::kubeconfig(&kube.connection())
            .map(|config| config.contexts.into_iter().map(|c| c.name).collect())
            .unwrap_or_default();
        names.sort();
        names.dedup();
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use clap::CommandFactory;
    use std::sync::Mutex;

    /// A cluster of two namespaces, each with its Services, and a kubeconfig of two contexts;
    /// it records the flags each lookup was asked with.
    #[derive(Default)]
    struct Fake {
        asked: Mutex<Vec<KubeArgs>>,
    }

    impl Lookup for Fake {
        fn services(&self, kube: &KubeArgs) -> Vec<String> {
            self.asked.lock().unwrap().push(kube.clone());
            match kube.namespace.as_deref() {
                Some("shop") => vec!["cart".into(), "web".into()],
                _ => vec!["kubernetes".into()],
            }
        }
        fn namespaces(&self, _: &KubeArgs) -> Vec<String> {
            vec!["default".into(), "shop".into()]
        }
        fn contexts(&self, _: &KubeArgs) -> Vec<String> {
            vec!["kind-realip".into(), "prod".into()]
        }
    }

    fn run_with(fake: &Fake, words: &[&str]) -> String {
        let words: Vec<String> = words.iter().map(|w| w.to_string()).collect();
        complete(&Cli::command(), &words, fake)
    }

    fn run(words: &[&str]) -> String {
        run_with(&Fake::default(), words)
    }

    fn values(out: &str) -> Vec<&str> {
        out.lines().map(|l| l.split('\t').next().unwrap()).collect()
    }

    #[test]
    fn subcommands_complete_with_descriptions() {
        let out = run(&["tr"]);
        assert!(out.starts_with("trace\tRun the probe"), "{out}");
        assert!(out.ends_with(":4\n"), "{out}");
        let all = run(&[""]);
        for name in ["trace", "explain", "analyze", "lab", "cleanup", "version"] {
            assert!(
                all.lines().any(|l| l.starts_with(name)),
                "{name} missing: {all}"
            );
        }
        assert!(!all.contains("lab-net"), "{all}");
        assert!(!run(&["lab-"]).contains("lab-net"));
    }

    #[test]
    fn flags_and_their_values_complete() {
        let out = run(&["trace", "svc/web", "--dur"]);
        assert!(out.starts_with("--duration\t"), "{out}");
        let out = run(&["analyze", "-o", ""]);
        assert_eq!(values(&out), ["text", "json", "mermaid", ":4"]);
        let out = run(&["trace", "svc/web", "--output=json", "--dry"]);
        assert!(out.starts_with("--dry-run\t"), "{out}");
        assert_eq!(
            values(&run(&["lab", "--output=m"])),
            ["--output=mermaid", ":4"]
        );
    }

    #[test]
    fn hidden_flags_are_not_offered() {
        let out = run(&["lab", "--"]);
        assert!(out.contains("--scenario"), "{out}");
        assert!(!out.contains("--ns-prefix"), "{out}");
    }

    #[test]
    fn services_come_from_the_namespace_the_line_names() {
        let fake = Fake::default();
        assert_eq!(
            values(&run_with(&fake, &["trace", "-n", "shop", ""])),
            ["svc/cart", "svc/web", ":4"]
        );
        assert_eq!(
            values(&run_with(&fake, &["trace", "--namespace=shop", "svc/w"])),
            ["svc/web", ":4"]
        );
        assert_eq!(
            values(&run_with(&fake, &["explain", "-nshop", "service/"])),
            ["service/cart", "service/web", ":4"]
        );
        // Without -n: the context's namespace, which the lookup decides.
        assert_eq!(
            values(&run_with(&fake, &["trace", ""])),
            ["svc/kubernetes", ":4"]
        );
        let asked = fake.asked.lock().unwrap();
        assert_eq!(asked[0].namespace.as_deref(), Some("shop"));
        assert_eq!(asked[3].namespace, None);
        // Once the Service is given, nothing more is a Service; an unknown flag is not it.
        drop(asked);
        assert_eq!(values(&run_with(&fake, &["trace", "svc/web", ""])), [":4"]);
        assert_eq!(
            values(&run_with(&fake, &["trace", "--nope", ""])),
            ["svc/kubernetes", ":4"]
        );
    }

    #[test]
    fn the_kubectl_flags_reach_the_lookup() {
        let fake = Fake::default();
        run_with(
            &fake,
            &[
                "trace",
                "--kubeconfig",
                "/tmp/kc",
                "--context=prod",
                "--as",
                "jane",
                "--request-timeout",
                "2s",
                "",
            ],
        );
        let asked = fake.asked.lock().unwrap();
        assert_eq!(
            asked[0].kubeconfig.as_deref(),
            Some(std::path::Path::new("/tmp/kc"))
        );
        assert_eq!(asked[0].context.as_deref(), Some("prod"));
        assert_eq!(asked[0].as_user.as_deref(), Some("jane"));
        assert_eq!(asked[0].request_timeout, Some(Duration::from_secs(2)));
    }

    #[test]
    fn namespaces_contexts_and_scenarios_complete() {
        assert_eq!(values(&run(&["trace", "-n", "s"])), ["shop", ":4"]);
        assert_eq!(
            values(&run(&["trace", "svc/web", "--probe-namespace", ""])),
            ["default", "shop", ":4"]
        );
        assert_eq!(
            values(&run(&["cleanup", "--context", "k"])),
            ["kind-realip", ":4"]
        );
        let out = run(&["lab", "--scenario", ""]);
        let names = values(&out);
        assert_eq!(names.len(), crate::lab::scenario::all().len() + 2, "{out}");
        assert_eq!(names[0], "all");
        assert!(names.contains(&"in-cluster-to-lb"), "{out}");
        assert_eq!(
            values(&run(&["lab", "--scenario", "nginx-ingress-l"])),
            ["nginx-ingress-local", ":4"]
        );
    }

    #[test]
    fn files_are_left_to_the_shell() {
        assert!(run(&["explain", "-f", ""]).ends_with(":0\n"));
        assert!(run(&["analyze", "capt"]).ends_with(":0\n"));
        assert!(run(&["analyze", "a.pcap", "b"]).ends_with(":0\n"));
        assert!(run(&["lab", "--save", ""]).ends_with(":0\n"));
        assert!(run(&["trace", "--context", ""]).ends_with(":4\n"));
    }

    /// The scripts for the bare binary offer what `kubectl realip` offers, and nothing hidden.
    #[test]
    fn scripts_leave_hidden_commands_and_flags_out() {
        for shell in [clap_complete::Shell::Bash, clap_complete::Shell::Zsh] {
            let mut out = Vec::new();
            script(shell, &mut out);
            let text = String::from_utf8(out).unwrap();
            assert!(
                text.contains("trace") && text.contains("--duration"),
                "{shell}"
            );
            assert!(text.contains("--scenario"), "{shell}");
            assert!(!text.contains("lab-net"), "{shell}: {text}");
            assert!(!text.contains("ns-prefix"), "{shell}");
        }
    }
}
