//! `kubectl realip lab`: the flags to the netns lab's work, its report and exit code; and
//! `lab-net`, what the lab runs inside its namespaces.

use crate::cli::{LabArgs, LabNetAction, LabNetArgs, OutputFormat};
use crate::error::{Failure, Kind, Result};
use crate::lab::driver::Tools;
use crate::lab::netns::LabError;
use crate::lab::topology::Names;
use crate::lab::{self, interrupt, render, scenario};
use std::time::Duration;

pub fn run(args: &LabArgs) -> Result<()> {
    if args.list {
        return lab::emit(&lab::list_text());
    }
    let scenarios = scenario::choose(&args.scenario).map_err(|name| {
        let names: Vec<&str> = scenario::all().iter().map(|s| s.name).collect();
        let choices = format!("choose one or more of: all, {}", names.join(", "));
        // Under "  hint: ", within the 80 columns.
        let indent = "        ";
        let lines = crate::output::wrap(&choices, crate::output::WIDTH, indent, indent);
        Failure::usage(format!("no scenario named {name:?}")).hint(lines.join("\n").trim_start())
    })?;
    if args.rules {
        let text = lab::rules_text(&scenarios)
            .map_err(|err| Failure::new(Kind::Probe, err.to_string()))?;
        return lab::emit(&text);
    }
    lab::preflight(if args.down { &[] } else { &scenarios })?;
    if args.down {
        return lab::down(&args.ns_prefix);
    }
    let probe = crate::probe_bin::locate(args.probe.as_deref()).map_err(|err| {
        Failure::new(Kind::Probe, err.to_string()).hint(crate::probe_bin::BUILD_HINT)
    })?;
    let me = std::env::current_exe()
        .map_err(|err| Failure::new(Kind::Probe, format!("cannot find this executable: {err}")))?;
    interrupt::install();
    let tools = Tools { probe, me };
    let names = Names::with_prefix(&args.ns_prefix, lab::run_id());
    let (runs, kept) = lab::execute(&names, &scenarios, &tools, args.keep)
        .map_err(|err| lab_failure(err, &names, args.keep))?;

    if let Some(dir) = &args.save {
        lab::save(dir, &runs)?;
    }
    let causes: Vec<String> = runs
        .iter()
        .map(|run| lab::cause::cause_text(&run.scenario))
        .collect();
    let text = match args.output {
        OutputFormat::Text => {
            let mut out = legend();
            for (run, cause) in runs.iter().zip(&causes) {
                out.push_str(&render::scenario_text(run, cause));
                out.push('\n');
            }
            if runs.len() > 1 {
                out.push_str(&render::table(&runs, crate::output::table_width()));
            }
            out
        }
        OutputFormat::Json => render::json(&runs, &causes),
        OutputFormat::Mermaid => render::mermaid(&runs),
    };
    lab::emit(&text)?;
    if let Some(namespaces) = kept {
        eprintln!("{}", lab::keep_text(&names, &namespaces));
    }
    let failed: Vec<&str> = runs
        .iter()
        .filter(|run| !run.matches())
        .map(|run| run.scenario.name)
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Failure::new(
            Kind::NoAnswer,
            format!(
                "measurement differs from the ground truth in: {}",
                failed.join(", ")
            ),
        )
        .hint("rerun with --keep and explore the namespaces by hand (ip netns exec …)"))
    }
}

/// What the text report's words stand for, said once before the scenarios.
fn legend() -> String {
    let text = "The lab: a client, a load balancer (clb, modelled on TKE's CLB: the Cloud Load \
                Balancer of Tencent Kubernetes Engine), two nodes with kube-proxy's rules, and \
                pods. Each connection is followed by its SYN's ISN (initial sequence number), \
                which NAT does not rewrite.";
    let mut out = String::new();
    for line in crate::output::wrap(text, crate::output::WIDTH, "", "") {
        out.push_str(&line);
        out.push('\n');
    }
    out.push('\n');
    out
}

fn lab_failure(err: LabError, names: &Names, keep: bool) -> Failure {
    // A Ctrl-C also reaches the lab's children: whatever failed first, the cause is the signal.
    let err = if interrupt::interrupted() {
        LabError::Interrupted
    } else {
        err
    };
    match err {
        LabError::Interrupted => {
            Failure::new(Kind::Interrupted, "interrupted; the lab's namespaces were removed")
        }
        other if keep => Failure::new(Kind::Probe, format!("lab: {other}")).hint(format!(
            "the lab is still up ({}*) to look into: ip netns exec NAME …; remove it with `{}`",
            names.prefix(),
            lab::down_command(names)
        )),
        other => Failure::new(Kind::Probe, format!("lab: {other}")).hint(
            "the namespaces of this run were removed; rerun with --keep to keep them up and look around",
        ),
    }
}

/// `lab-net`: a test client's one GET, or an L7 proxy, inside a lab namespace.
pub fn run_net(args: &LabNetArgs) -> Result<()> {
    match &args.action {
        LabNetAction::Get {
            to,
            timeout_ms,
            wait_ms,
        } => {
            let outcome = lab::net::get(
                *to,
                Duration::from_millis(*timeout_ms),
                Duration::from_millis(*wait_ms),
            );
            let line = serde_json::to_string(&outcome).unwrap_or_default();
            crate::output::emit(&format!("{line}\n"))
                .map_err(|err| Failure::new(Kind::Probe, format!("writing to stdout: {err}")))
        }
        LabNetAction::Proxy { listen, to, xff } => lab::net::proxy(*listen, *to, *xff)
            .map_err(|err| Failure::new(Kind::Probe, format!("lab proxy on {listen}: {err}"))),
    }
}
