//! The trace, step by step: resolve the Service and its topology, check Pod Security, create
//! the run's objects, wait for the probes, follow their logs, and always remove what was
//! created — on success, on error and on a signal.

use super::collect::Collector;
use super::manifests::{
    Delivery, Objects, RunPlan, MANAGED_LABEL, MANAGED_VALUE, PROBE_CONTAINER, RUN_LABEL,
};
use super::preflight::{self, PodAdmission};
use super::progress::{NodeLines, Progress};
use super::readiness::{pod_state, PodState};
use super::report::TraceReport;
use super::send::{self, Sent};
use super::teardown::{self, Scope};
use super::topology::{self, Choice, Topology, TopologyError};
use super::{psa, TraceOptions};
use crate::analyze::Analyzer;
use crate::cli::{OutputFormat, TraceArgs};
use crate::cluster::explain_reads::{self as live, Known};
use crate::cluster::{self as cluster_api, Cluster, KubeError, Refusal};
use crate::error::{Failure, Kind, Result};
use crate::explain::explain_gathered;
use crate::explain::facts::Protocol;
use crate::explain::model::Explanation;
use futures::{AsyncBufReadExt, StreamExt};
use k8s_openapi::api::core::v1::{Event as KubeEvent, Namespace, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::WatchEvent;
use kube::ResourceExt;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// What a trace produced for stdout.
#[derive(Debug)]
pub struct Traced {
    pub output: String,
    /// At least one connection was seen.
    pub answered: bool,
}

/// Runs a trace until done or until `interrupt` resolves; cleans up in every case.
pub async fn trace(
    args: &TraceArgs,
    options: &TraceOptions,
    interrupt: impl Future<Output = ()>,
) -> Result<Traced> {
    let name = cluster_api::parse_target(&args.target).map_err(|err| {
        Failure::usage(err.to_string()).hint("name the Service like kubectl does: svc/NAME")
    })?;
    let cluster = Cluster::new(cluster_api::clients(&args.kube).await?);
    let namespace = cluster.default_namespace().to_string();
    let progress = Progress::new(args.output != OutputFormat::Json && !args.dry_run);
    progress.step(format!("reading Service {namespace}/{name}"));

    let (topology, choice, known) = resolve(&cluster, &namespace, name, args).await?;
    let (plan, unfit) = make_plan(args, options, &topology, &choice)?;
    let mut skipped = choice.skipped.clone();
    skipped.extend(unfit);
    let mut objects =
        Objects::build(&plan).map_err(|err| Failure::new(Kind::Probe, err.to_string()))?;

    if args.dry_run {
        progress.finish();
        return Ok(Traced {
            output: dry_run_text(&plan, &objects, &skipped)?,
            answered: true,
        });
    }

    let created_namespace = Mutex::new(None::<String>);
    let work = async {
        prepare(
            &cluster,
            &plan,
            &objects,
            args,
            options,
            &progress,
            &created_namespace,
        )
        .await?;
        create(&cluster, &plan, &mut objects, &progress).await?;
        let ready = wait_ready(&cluster, &plan, options, &mut skipped, &progress).await?;
        capture(&cluster, &plan, args, &topology, &ready, &progress).await
    };
    let outcome = tokio::select! {
        outcome = work => outcome,
        () = interrupt => {
            progress.println("interrupted: removing the probe (this waits until it is gone)");
            Err(Failure::new(Kind::Interrupted, "interrupted; the probe was removed"))
        }
    };

    progress.step("removing the probe");
    let scope = Scope {
        namespace: Some(plan.namespace.clone()),
        selector: plan.run_selector(),
    };
    let removal = teardown::remove(&cluster, &scope, options.teardown_wait).await;
    let mut left = removal.left;
    let namespace_to_delete = created_namespace.lock().ok().and_then(|mut ns| ns.take());
    if let Some(ns) = namespace_to_delete {
        progress.step(format!("removing namespace {ns}"));
        if let Err(err) = teardown::delete_namespace(&cluster, &ns, options.teardown_wait).await {
            left.push(format!("namespace {ns}: {err}"));
        }
    }
    progress.finish();
    if !left.is_empty() {
        let text = format!(
            "warning: some objects could not be removed (they expire by themselves at {}; \
             `kubectl realip cleanup` removes them now):\n  {}",
            plan.expires_at(),
            left.join("\n  ")
        );
        eprintln!("{text}");
    }

    let Captured {
        events,
        warnings,
        mut sent,
        probed,
    } = outcome?;
    send::attach_sightings(&mut sent, &events);
    let mut analyzer = Analyzer::new();
    // The addresses test connections left from are the client by construction.
    let mut view = topology.cluster_view();
    view.senders = sent
        .iter()
        .filter_map(|s| s.local.as_deref()?.parse::<std::net::SocketAddr>().ok())
        .map(|local| local.ip())
        .collect();
    analyzer.set_view(view);
    for event in events {
        analyzer.push(event);
    }
    for warning in warnings {
        analyzer.warn(warning);
    }
    let report = analyzer.finish();
    send::attach_flows(&mut sent, &report);
    let answered = !report.flows.is_empty();
    let (prediction, by_entry_node) = predictions(&cluster, known, &report, options).await;
    let traced = TraceReport::new(
        report,
        &topology,
        probed,
        skipped,
        prediction,
        by_entry_node,
        sent,
    );
    let output = match args.output {
        OutputFormat::Text => traced.to_text(&topology),
        OutputFormat::Json => traced.to_json(),
        OutputFormat::Mermaid => crate::analyze::render_mermaid(&traced.report),
    };
    Ok(Traced { output, answered })
}

/// The nodes measured connections entered at, most entered first.
fn entry_nodes(report: &crate::analyze::model::Report) -> Vec<String> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for flow in &report.flows {
        if let Some(first) = flow.hops.first() {
            *counts.entry(first.node.as_str()).or_default() += 1;
        }
    }
    let mut nodes: Vec<(&str, usize)> = counts.into_iter().collect();
    nodes.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    nodes
        .into_iter()
        .map(|(node, _)| node.to_string())
        .collect()
}

/// Entry nodes explain is asked about, at most: the report sets each beside its measurements.
const MAX_ENTRY_PREDICTIONS: usize = 4;

/// explain's prediction for the node most connections entered at, and, when they entered at
/// several, one per entry node: the entry node decides between the node's and the bridge's
/// address, so each measurement is set beside the prediction for its own path. explain is
/// given the Service, EndpointSlices and nodes trace read, and reads the rest once.
async fn predictions(
    cluster: &Cluster,
    known: Known,
    report: &crate::analyze::model::Report,
    options: &TraceOptions,
) -> (Option<Explanation>, BTreeMap<String, Explanation>) {
    if let Some(given) = &options.prediction {
        return (Some(given.clone()), BTreeMap::new());
    }
    if !options.predict_live {
        return (None, BTreeMap::new());
    }
    let source = live::KubeSource {
        cluster: cluster.clone(),
    };
    let objects = live::gather_known(&source, known).await;
    let entries = entry_nodes(report);
    if entries.len() < 2 {
        let main = explain_gathered(&objects, entries.first().map(String::as_str));
        return (Some(main), BTreeMap::new());
    }
    let by_entry_node: BTreeMap<String, Explanation> = entries
        .iter()
        .take(MAX_ENTRY_PREDICTIONS)
        .map(|node| (node.clone(), explain_gathered(&objects, Some(node))))
        .collect();
    let main = by_entry_node.get(&entries[0]).cloned();
    (main, by_entry_node)
}

fn cluster_failure(err: KubeError, what: &str) -> Failure {
    match err {
        KubeError::NotFound { .. } => Failure::new(Kind::Cluster, format!("{what} not found")),
        other => other.into(),
    }
}

/// Reads the Service, its EndpointSlices and the nodes; works out the topology and the nodes to
/// probe. What was read is kept for explain.
async fn resolve(
    cluster: &Cluster,
    namespace: &str,
    name: &str,
    args: &TraceArgs,
) -> Result<(Topology, Choice, Known)> {
    let service = cluster
        .namespaced::<Service>(namespace)
        .get(name)
        .await
        .map_err(|err| match err {
            KubeError::NotFound { .. } => Failure::new(
                Kind::Cluster,
                format!("Service {name} not found in namespace {namespace}"),
            )
            .hint(format!(
                "`kubectl get services -n {namespace}` lists what exists; -n picks the namespace"
            )),
            other => other.into(),
        })?;
    let slices = cluster
        .namespaced::<EndpointSlice>(namespace)
        .list(Some(&format!("kubernetes.io/service-name={name}")))
        .await?;
    let nodes = cluster.all::<Node>().list(None).await?;
    let selected = match &args.nodes {
        Some(selector) => Some(
            cluster
                .all::<Node>()
                .list(Some(selector))
                .await?
                .iter()
                .map(|n| n.name_any())
                .collect::<BTreeSet<_>>(),
        ),
        None => None,
    };
    let topology = Topology::from_objects(&service, &slices, &nodes).map_err(topology_failure)?;
    let choice = topology::choose_nodes(&topology, selected.as_ref(), args.max_nodes)
        .map_err(topology_failure)?;
    let known = Known {
        service,
        slices,
        nodes,
    };
    Ok((topology, choice, known))
}

fn topology_failure(err: TopologyError) -> Failure {
    let hint = match &err {
        TopologyError::ExternalName(_) => "trace the Service the alias points to instead",
        TopologyError::Headless(_) => {
            "trace a non-headless Service in front of the same pods, or capture on the pods' nodes with realip-probe"
        }
        TopologyError::NoEndpoints { .. } => {
            "`kubectl get endpointslices -l kubernetes.io/service-name=NAME` shows the backends; start pods or fix the selector"
        }
        TopologyError::NothingToProbe(_) => {
            "the probe needs a Linux node with a real network stack; --nodes picks others"
        }
    };
    Failure::new(Kind::Cluster, err.to_string()).hint(hint)
}

/// The run plan, and the nodes dropped because no carried probe fits their architecture.
fn make_plan(
    args: &TraceArgs,
    options: &TraceOptions,
    topology: &Topology,
    choice: &Choice,
) -> Result<(RunPlan, BTreeMap<String, String>)> {
    let mut nodes: Vec<String> = choice.probe.keys().cloned().collect();
    let mut dropped = BTreeMap::new();
    let delivery = match &args.image {
        Some(image) => Delivery::Image(image.clone()),
        None => {
            if options.probes.is_empty() {
                return Err(Failure::usage(
                    "this build of kubectl-realip carries no probe binary",
                )
                .hint("run a prebuilt probe image with --image (see probe/Dockerfile), or build with REALIP_PROBE_EMBED"));
            }
            let carried: BTreeSet<&str> = options
                .probes
                .iter()
                .map(|p| p.kube_arch.as_str())
                .collect();
            nodes.retain(|node| {
                let arch = topology
                    .nodes
                    .iter()
                    .find(|n| &n.name == node)
                    .and_then(|n| n.arch.as_deref())
                    .unwrap_or("amd64");
                let fits = carried.contains(arch);
                if !fits {
                    dropped.insert(
                        node.clone(),
                        format!(
                            "{arch} node: this plugin carries the probe for {} only; use --image",
                            carried.iter().copied().collect::<Vec<_>>().join(", ")
                        ),
                    );
                }
                fits
            });
            if nodes.is_empty() {
                return Err(Failure::new(
                    Kind::Cluster,
                    "no chosen node has an architecture this plugin carries a probe for",
                )
                .hint("run a multi-architecture probe image with --image"));
            }
            Delivery::Embedded {
                probes: options.probes.clone(),
                probe_version: options.probe_version.clone(),
                base_image: options.base_image.clone(),
            }
        }
    };
    let mut ports: BTreeSet<u16> = topology.endpoint_ports.iter().copied().collect();
    for port in &topology.service.ports {
        if port.protocol == Protocol::Tcp {
            ports.insert(port.port);
            ports.extend(port.node_port);
        }
    }
    let ready_secs = options.ready_timeout.as_secs();
    let capture_secs = ready_secs + args.duration.as_secs().max(1) + 60;
    // Past the capture's end the probes idle; the cluster removes them soon after.
    let plan = RunPlan {
        run_id: options.run_id.clone(),
        namespace: args
            .probe_namespace
            .clone()
            .unwrap_or_else(|| topology.namespace().to_string()),
        target: topology.service.qualified(),
        nodes,
        started_unix: options.now_unix,
        capture_secs,
        expiry_secs: capture_secs + EXPIRY_MARGIN_SECS,
        l7: args.l7 || args.send,
        evidence: args.evidence,
        ports: ports.into_iter().collect(),
        delivery,
        timer_image: options.base_image.clone(),
    };
    Ok((plan, dropped))
}

/// How long after the probes' deadline the cluster's expiry removes a run nobody removed.
const EXPIRY_MARGIN_SECS: u64 = 30;

fn dry_run_text(
    plan: &RunPlan,
    objects: &Objects,
    skipped: &BTreeMap<String, String>,
) -> Result<String> {
    let mut out = format!(
        "# kubectl realip trace --dry-run: the objects a run would create in namespace {}.\n\
         # Nothing was created. Probed nodes: {}.\n",
        plan.namespace,
        plan.nodes.join(", ")
    );
    for (node, reason) in skipped {
        out.push_str(&format!("# Not probed: {node}: {reason}\n"));
    }
    out.push_str(
        "# The ConfigMaps and the DaemonSet get an ownerReference to the Job once it exists.\n",
    );
    if plan.evidence {
        out.push_str(
            "# --evidence: the probe container adds the NET_ADMIN capability, to read (never\n\
             # write) each node's NAT rules, conntrack entries and routes through netlink\n\
             # (docs/security.md).\n",
        );
    }
    out.push_str(
        &objects
            .to_yaml()
            .map_err(|err| Failure::new(Kind::Probe, format!("rendering YAML: {err}")))?,
    );
    Ok(out)
}

/// Everything checked before the first object is stored: the namespace (a Terminating one is
/// waited for), the permission of every call the run makes, Pod Security, and a server-side dry
/// run of every object. A missing `--probe-namespace` is created here (ours, removed at the end).
async fn prepare(
    cluster: &Cluster,
    plan: &RunPlan,
    objects: &Objects,
    args: &TraceArgs,
    options: &TraceOptions,
    progress: &Progress,
    created: &Mutex<Option<String>>,
) -> Result<()> {
    progress.step(format!(
        "checking namespace {}, permissions and objects",
        plan.namespace
    ));
    let mut existing = cluster.all::<Namespace>().get_opt(&plan.namespace).await?;
    if existing.as_ref().is_some_and(teardown::terminating) {
        existing = wait_terminated(cluster, plan, args, options, progress).await?;
    }
    check_access(cluster, plan, existing.is_none()).await?;
    let namespace = match existing {
        Some(existing) => existing,
        None => create_namespace(cluster, plan, created).await?,
    };
    check_pod_security(cluster, plan, objects, args, progress, &namespace).await?;
    preflight::dry_run_objects(cluster, plan, objects)
        .await
        .map_err(|err| {
            let mut failure = Failure::from(err);
            failure.message = format!("{}; nothing was created", failure.message);
            failure
        })
}

/// Every call the run makes, allowed? Asked before anything exists: a run that could create but
/// not delete would leave its objects until the cluster's expiry.
async fn check_access(cluster: &Cluster, plan: &RunPlan, create_namespace: bool) -> Result<()> {
    let denied = preflight::denied(cluster, &preflight::needed(plan, create_namespace)).await;
    let Some((first, _)) = denied.first() else {
        return Ok(());
    };
    let lines: Vec<String> = denied
        .iter()
        .map(|(access, reason)| match reason.as_str() {
            "" => access.to_string(),
            reason => format!("{access}: {reason}"),
        })
        .collect();
    Err(Failure::new(
        Kind::Cluster,
        format!(
            "the run could not finish: not allowed to\n  {}\nnothing was created",
            lines.join("\n  ")
        ),
    )
    .hint(format!(
        "grant these verbs ({} has a minimal Role/ClusterRole); `kubectl auth can-i {}` asks the same",
        cluster_api::RBAC_DOC,
        first.can_i()
    )))
}

/// Creates a missing `--probe-namespace`, labelled ours and privileged.
async fn create_namespace(
    cluster: &Cluster,
    plan: &RunPlan,
    created: &Mutex<Option<String>>,
) -> Result<Namespace> {
    let namespace: Namespace = serde_json::from_value(json!({
        "metadata": {
            "name": plan.namespace,
            "labels": {
                MANAGED_LABEL: MANAGED_VALUE,
                RUN_LABEL: plan.run_id,
                psa::ENFORCE_LABEL: "privileged",
            },
        },
    }))
    .map_err(|err| Failure::new(Kind::Probe, err.to_string()))?;
    let namespace = cluster.all::<Namespace>().create(&namespace).await?;
    if let Ok(mut slot) = created.lock() {
        *slot = Some(plan.namespace.clone());
    }
    Ok(namespace)
}

/// Makes sure admission lets the probe pods run in the probe namespace. The server decides
/// (a dry run of the probe pod): a namespace labelled `baseline` may be exempted by the
/// cluster's AdmissionConfiguration, one without a label may get a restrictive default. The
/// label only explains a refusal, or decides when the dry run cannot be asked.
async fn check_pod_security(
    cluster: &Cluster,
    plan: &RunPlan,
    objects: &Objects,
    args: &TraceArgs,
    progress: &Progress,
    existing: &Namespace,
) -> Result<()> {
    let label = psa::judge(existing.metadata.labels.as_ref());
    let admission = preflight::admit_probe_pod(cluster, plan, objects).await;
    if let PodAdmission::Refused(err) = &admission {
        if plan.evidence && admitted_without_net_admin(cluster, plan).await {
            return Err(Failure::new(
                Kind::Cluster,
                format!(
                    "namespace {} admits the probe, but not with the NET_ADMIN capability \
                     --evidence adds: {err}; nothing was created",
                    plan.namespace
                ),
            )
            .hint(psa::net_admin_hint(&plan.namespace)));
        }
    }
    let refused = match admission {
        PodAdmission::Admitted => {
            if let psa::Verdict::Rejected { level } = &label {
                progress.println(&format!(
                    "note: namespace {} is labelled {}={level}, yet admission accepts the probe \
                     (an exemption of the cluster's Pod Security configuration)",
                    plan.namespace,
                    psa::ENFORCE_LABEL
                ));
            }
            return Ok(());
        }
        PodAdmission::Refused(KubeError::Forbidden {
            refusal: Refusal::PodSecurity,
            message,
            ..
        }) => format!(
            "namespace {} refuses the probe ({}): {message}",
            plan.namespace,
            psa::explain_level(&label)
        ),
        PodAdmission::Refused(err) => {
            let mut failure = Failure::from(err);
            failure.message = format!(
                "admission refuses the probe pod: {}; nothing was created",
                failure.message
            );
            return Err(failure);
        }
        PodAdmission::NotAsked(why) => match &label {
            psa::Verdict::Rejected { level } => format!(
                "namespace {} enforces Pod Security level \"{level}\", which rejects the {} the probe needs (admission could not be asked: {why})",
                plan.namespace,
                psa::needs(plan.evidence)
            ),
            _ => {
                tracing::info!("Pod Security not asked ({why}); the namespace's label allows the probe");
                return Ok(());
            }
        },
    };
    if !args.label_namespace_privileged {
        return Err(
            Failure::new(Kind::Cluster, format!("{refused}; nothing was created"))
                .hint(psa::refusal_hint(&plan.namespace)),
        );
    }
    cluster
        .all::<Namespace>()
        .merge_patch(
            &plan.namespace,
            &json!({"metadata": {"labels": {psa::ENFORCE_LABEL: "privileged"}}}),
        )
        .await?;
    progress.println(&format!(
        "note: labelled namespace {} {}=privileged as asked (--label-namespace-privileged); \
         it stays so: `kubectl label namespace {} {}-` reverts it",
        plan.namespace,
        psa::ENFORCE_LABEL,
        plan.namespace,
        psa::ENFORCE_LABEL
    ));
    Ok(())
}

/// Whether admission takes the probe pod once NET_ADMIN (`--evidence`) is left out: then that
/// capability alone is what the namespace's policy refuses.
async fn admitted_without_net_admin(cluster: &Cluster, plan: &RunPlan) -> bool {
    let plain = RunPlan {
        evidence: false,
        ..plan.clone()
    };
    match Objects::build(&plain) {
        Ok(objects) => matches!(
            preflight::admit_probe_pod(cluster, &plain, &objects).await,
            PodAdmission::Admitted
        ),
        Err(_) => false,
    }
}

/// A probe namespace being deleted (an earlier run's, say) refuses every object: wait until it
/// is gone, then it is created anew. The Service's own namespace going away ends the trace.
async fn wait_terminated(
    cluster: &Cluster,
    plan: &RunPlan,
    args: &TraceArgs,
    options: &TraceOptions,
    progress: &Progress,
) -> Result<Option<Namespace>> {
    let refusal = Refusal::NamespaceTerminating {
        namespace: plan.namespace.clone(),
    };
    let hint = refusal.hint("create", "namespaces", None);
    if args.probe_namespace.is_none() {
        return Err(Failure::new(
            Kind::Cluster,
            format!(
                "namespace {} of the Service is being deleted (Terminating); nothing was created",
                plan.namespace
            ),
        )
        .hint(hint));
    }
    progress.step(format!(
        "namespace {} is being deleted: waiting until it is gone",
        plan.namespace
    ));
    if teardown::wait_namespace_gone(cluster, &plan.namespace, options.teardown_wait).await? {
        return Ok(None);
    }
    Err(Failure::new(
        Kind::Cluster,
        format!(
            "namespace {} is being deleted (Terminating) and was still there after {}s; nothing was created",
            plan.namespace,
            options.teardown_wait.as_secs()
        ),
    )
    .hint(hint))
}

/// The Job first (it owns the rest, for the cluster's own expiry), then ConfigMaps, DaemonSet.
async fn create(
    cluster: &Cluster,
    plan: &RunPlan,
    objects: &mut Objects,
    progress: &Progress,
) -> Result<()> {
    progress.step(format!(
        "creating the probe in namespace {}",
        plan.namespace
    ));
    let job = cluster
        .namespaced(&plan.namespace)
        .create(&objects.job)
        .await
        .map_err(|err| cluster_failure(err, &format!("namespace {}", plan.namespace)))?;
    let uid = job.metadata.uid.clone().ok_or_else(|| {
        Failure::new(
            Kind::Cluster,
            "the API returned the expiry Job without a uid",
        )
    })?;
    objects.owned_by_job(&uid);
    for map in &objects.config_maps {
        cluster.namespaced(&plan.namespace).create(map).await?;
    }
    cluster
        .namespaced(&plan.namespace)
        .create(&objects.daemon_set)
        .await?;
    Ok(())
}

/// A probe pod that runs, by node.
#[derive(Debug, Clone)]
struct ReadyProbe {
    node: String,
    pod: String,
}

/// Watches the probe pods until each node's is running or failed, or the time is up.
async fn wait_ready(
    cluster: &Cluster,
    plan: &RunPlan,
    options: &TraceOptions,
    skipped: &mut BTreeMap<String, String>,
    progress: &Progress,
) -> Result<Vec<ReadyProbe>> {
    let mut progress_nodes = Progress::node_lines(progress);
    progress.step("waiting for the probes to start");
    let pods = cluster.namespaced::<Pod>(&plan.namespace);
    let selector = plan.run_selector();
    let mut states: BTreeMap<String, (String, PodState)> = BTreeMap::new();
    let deadline = Instant::now() + options.ready_timeout;
    let mut failed_create: Option<String> = None;
    for node in &plan.nodes {
        progress_nodes.set(node, "waiting for a pod");
    }
    'outer: loop {
        let (listed, version) = pods.list_with_version(Some(&selector)).await?;
        for pod in listed {
            note_pod(&pod, &mut states, &mut progress_nodes);
        }
        let stream = cluster
            .watch_pods(&plan.namespace, &selector, &version)
            .await?;
        futures::pin_mut!(stream);
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        loop {
            if plan
                .nodes
                .iter()
                .all(|n| states.get(n).is_some_and(|(_, s)| s.settled()))
            {
                break 'outer;
            }
            if Instant::now() >= deadline {
                break 'outer;
            }
            tokio::select! {
                event = stream.next() => match event {
                    Some(Ok(WatchEvent::Added(pod) | WatchEvent::Modified(pod))) => note_pod(&pod, &mut states, &mut progress_nodes),
                    Some(Ok(WatchEvent::Deleted(pod))) => {
                        if let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) {
                            states.insert(node, (pod.name_any(), PodState::Failed("the probe pod was deleted".into())));
                        }
                    }
                    Some(Ok(WatchEvent::Bookmark(_))) => {}
                    // The watch ended or its resourceVersion expired (410): list again.
                    Some(Ok(WatchEvent::Error(_)) | Err(_)) | None => continue 'outer,
                },
                _ = tick.tick() => {
                    if let Some(reason) = daemon_set_failure(cluster, plan).await? {
                        if Refusal::of_message(&reason) == Refusal::PodSecurity {
                            return Err(Failure::new(Kind::Cluster, format!("Pod Security refused the probe pods: {reason}"))
                                .hint(psa::refusal_hint(&plan.namespace)));
                        }
                        failed_create = Some(reason);
                    }
                }
                _ = tokio::time::sleep_until(deadline.into()) => {}
            }
        }
    }
    let mut ready = Vec::new();
    for node in &plan.nodes {
        match states.get(node) {
            Some((pod, PodState::Running)) => ready.push(ReadyProbe {
                node: node.clone(),
                pod: pod.clone(),
            }),
            Some((pod, PodState::Failed(reason))) => {
                let detail = pod_warning(cluster, &plan.namespace, pod).await;
                skipped.insert(node.clone(), format!("probe failed: {reason}{detail}"));
            }
            Some((pod, PodState::Pending(reason))) => {
                let detail = pod_warning(cluster, &plan.namespace, pod).await;
                skipped.insert(
                    node.clone(),
                    format!(
                        "probe not running after {}s (--ready-timeout): {reason}{detail}",
                        options.ready_timeout.as_secs()
                    ),
                );
            }
            None => {
                skipped.insert(
                    node.clone(),
                    match &failed_create {
                        Some(reason) => format!("no probe pod was created: {reason}"),
                        None => format!(
                            "no probe pod appeared within {}s",
                            options.ready_timeout.as_secs()
                        ),
                    },
                );
            }
        }
    }
    for node in &plan.nodes {
        if let Some(reason) = skipped.get(node) {
            progress.println(&format!("warning: {node}: {reason}"));
        }
    }
    if ready.is_empty() {
        let reasons: Vec<String> = plan
            .nodes
            .iter()
            .filter_map(|n| skipped.get(n).map(|r| format!("{n}: {r}")))
            .collect();
        return Err(Failure::new(
            Kind::Probe,
            format!("no probe started; {}", reasons.join("; ")),
        )
        .hint("an image pull failure needs a reachable image (--base-image or --image from a registry the nodes can pull from); `kubectl describe pod -l kubectl-realip/run` shows more while it runs"));
    }
    Ok(ready)
}

fn note_pod(
    pod: &Pod,
    states: &mut BTreeMap<String, (String, PodState)>,
    lines: &mut NodeLines<'_>,
) {
    let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
        return;
    };
    let state = pod_state(pod);
    lines.set(
        &node,
        &match &state {
            PodState::Pending(reason) => format!("pending: {reason}"),
            PodState::Running => "running".to_string(),
            PodState::Failed(reason) => format!("failed: {reason}"),
        },
    );
    states.insert(node, (pod.name_any(), state));
}

/// A Warning event of the DaemonSet (FailedCreate: Pod Security, quota...).
async fn daemon_set_failure(cluster: &Cluster, plan: &RunPlan) -> Result<Option<String>> {
    let fields = format!(
        "involvedObject.kind=DaemonSet,involvedObject.name={}",
        plan.daemon_set_name()
    );
    let events = match cluster
        .namespaced::<KubeEvent>(&plan.namespace)
        .list_fields(&fields)
        .await
    {
        Ok(events) => events,
        // Reading events is optional: without the grant, readiness still shows pod states.
        Err(err) if err.is_forbidden() => return Ok(None),
        Err(err) => return Err(err.into()),
    };
    Ok(events
        .into_iter()
        .filter(|e| {
            e.type_.as_deref() == Some("Warning") && e.reason.as_deref() == Some("FailedCreate")
        })
        .filter_map(|e| e.message)
        .next_back())
}

/// The last Warning event of a pod, as ` (message)`.
async fn pod_warning(cluster: &Cluster, namespace: &str, pod: &str) -> String {
    let fields = format!("involvedObject.kind=Pod,involvedObject.name={pod}");
    cluster
        .namespaced::<KubeEvent>(namespace)
        .list_fields(&fields)
        .await
        .ok()
        .and_then(|events| {
            events
                .into_iter()
                .filter(|e| e.type_.as_deref() == Some("Warning"))
                .filter_map(|e| e.message)
                .next_back()
        })
        .map(|m| format!(" ({m})"))
        .unwrap_or_default()
}

/// What a capture brought back.
struct Captured {
    events: Vec<realip_probe::wire::Event>,
    warnings: Vec<String>,
    sent: Vec<Sent>,
    /// The nodes whose probe ran: every other planned node is in the report's skipped nodes.
    probed: Vec<String>,
}

/// How long the streams may take to come past the stop moment before the capture ends without
/// them (a node's log lagging more than this is said in the report).
const DRAIN_WAIT: Duration = Duration::from_secs(5);

/// Follows every ready probe's log until the duration is over, `--flows N` connections reached
/// a backend (and the test connections of `--send` are done), or every probe ended its capture;
/// then drains every stream up to the stop moment.
async fn capture(
    cluster: &Cluster,
    plan: &RunPlan,
    args: &TraceArgs,
    topology: &Topology,
    ready: &[ReadyProbe],
    progress: &Progress,
) -> Result<Captured> {
    let backends: Vec<IpAddr> = topology
        .addresses()
        .filter_map(|(address, _)| address.parse().ok())
        .collect();
    let mut collector = Collector::new(backends);
    collector.expect_version(crate::embedded::PROBE_VERSION);
    let (tx, mut rx) = mpsc::channel::<(String, String, String)>(1024);
    let mut followers = Vec::new();
    for probe in ready {
        collector.expect(&probe.node);
        followers.push(tokio::spawn(follow(
            cluster.clone(),
            plan.namespace.clone(),
            probe.clone(),
            tx.clone(),
        )));
    }
    drop(tx);
    let mut lines = Progress::node_lines(progress);
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + args.duration;
    let mut sending: Option<tokio::task::JoinHandle<Vec<Sent>>> = None;
    let send_targets = if args.send {
        send::entry_points(topology, &plan.nodes, &args.send_to)
    } else {
        Vec::new()
    };
    // Reached: the duration is over or --flows connections reached a backend.
    let mut reached = false;
    progress.step(format!("capturing for {}s", args.duration.as_secs()));
    let drain = loop {
        // Test connections go out once every probe listens (or after 5 s at most, or now).
        if args.send && sending.is_none() {
            let listening = collector.nodes().values().all(|n| n.said_hello);
            if listening || reached || started.elapsed() > Duration::from_secs(5) {
                let run_id = plan.run_id.clone();
                let targets = send_targets.clone();
                sending = Some(tokio::spawn(async move {
                    send::send_all(&run_id, &targets, Duration::from_secs(5)).await
                }));
            }
        }
        // Done once the test connections are: their sightings belong to the capture.
        if reached && sending.as_ref().is_none_or(|h| h.is_finished()) {
            break true;
        }
        let line = tokio::select! {
            line = rx.recv() => line,
            () = tokio::time::sleep_until(deadline), if !reached => {
                reached = true;
                continue;
            }
            () = tokio::time::sleep(Duration::from_millis(200)) => continue,
        };
        let Some((pod, node, line)) = line else {
            break false;
        };
        if collector.push_line(&pod, &node, &line) {
            if let Some(count) = collector.nodes().get(&node) {
                lines.set(&node, &format!("capturing: {} SYNs", count.syns));
            }
        }
        if collector.all_done() {
            break false;
        }
        if args.flows.is_some_and(|n| collector.complete_flows() >= n) {
            reached = true;
        }
        if collector.syns() >= args.max_syns {
            collector.warn_once(format!(
                "the capture stopped after {} SYN sightings (--max-syns): the report covers the \
                 first connections; narrow it with --flows or raise --max-syns",
                args.max_syns
            ));
            break false;
        }
    };
    if drain {
        progress.step("collecting what the probes saw up to now");
        drain_streams(&mut collector, &mut rx).await;
    }
    if plan.evidence {
        progress.step("stopping the probes: each reads its node's NAT rules once more");
        end_probes(cluster, plan, &mut collector, &mut rx).await;
    }
    for follower in followers {
        follower.abort();
    }
    let sent = match sending {
        Some(handle) => handle.await.unwrap_or_default(),
        None => Vec::new(),
    };
    let (events, warnings) = collector.finish();
    Ok(Captured {
        events,
        warnings,
        sent,
        probed: ready.iter().map(|p| p.node.clone()).collect(),
    })
}

/// With `--evidence`, stops the probes (their DaemonSet is deleted: its pods are stopped) and
/// takes their streams to the end: a stopped probe writes its end snapshot of the rules, whose
/// counters over the capture name the rule behind each rewrite, then says bye.
async fn end_probes(
    cluster: &Cluster,
    plan: &RunPlan,
    collector: &mut Collector,
    rx: &mut mpsc::Receiver<(String, String, String)>,
) {
    if let Err(err) = cluster
        .namespaced::<k8s_openapi::api::apps::v1::DaemonSet>(&plan.namespace)
        .delete(&plan.daemon_set_name())
        .await
    {
        collector.warn_once(format!(
            "the probes could not be stopped for their end snapshot ({err}): the rules' \
             counters over the capture are not known"
        ));
        return;
    }
    let wait = Duration::from_secs(super::manifests::probe_grace_secs(plan)) + DRAIN_WAIT;
    let deadline = tokio::time::Instant::now() + wait;
    while !collector.all_done() {
        tokio::select! {
            line = rx.recv() => match line {
                Some((pod, node, line)) => {
                    collector.push_line(&pod, &node, &line);
                }
                None => break,
            },
            () = tokio::time::sleep_until(deadline) => break,
        }
    }
    if !collector.all_done() {
        let ended: Vec<&str> = collector
            .nodes()
            .iter()
            .filter(|(_, n)| !n.said_bye)
            .map(|(node, _)| node.as_str())
            .collect();
        collector.warn_once(format!(
            "the probe on {} did not end within {}s of being stopped: its end snapshot of the \
             rules is missing",
            ended.join(", "),
            wait.as_secs()
        ));
    }
}

/// Takes every stream up to the stop moment: each probe's heartbeat (or its end) must come
/// past it, so that a connection's hops on a node whose log lags are not missed.
async fn drain_streams(
    collector: &mut Collector,
    rx: &mut mpsc::Receiver<(String, String, String)>,
) {
    collector.stop();
    let deadline = tokio::time::Instant::now() + DRAIN_WAIT;
    while !collector.lagging().is_empty() {
        tokio::select! {
            line = rx.recv() => match line {
                Some((pod, node, line)) => {
                    collector.push_line(&pod, &node, &line);
                }
                None => break,
            },
            () = tokio::time::sleep_until(deadline) => {
                let lagging = collector.lagging().join(", ");
                collector.warn_once(format!(
                    "the probe stream of {lagging} had not come up to the end of the capture \
                     {}s later: its last sightings may be missing",
                    DRAIN_WAIT.as_secs()
                ));
                break;
            }
        }
    }
}

/// Follows one probe's log; a broken stream or a restarted container is followed again
/// (the collector drops the lines seen before).
async fn follow(
    cluster: Cluster,
    namespace: String,
    probe: ReadyProbe,
    tx: mpsc::Sender<(String, String, String)>,
) {
    let mut failures = 0u32;
    loop {
        match cluster
            .follow_log(&namespace, &probe.pod, PROBE_CONTAINER)
            .await
        {
            Ok(stream) => {
                let mut lines = stream.lines();
                while let Some(line) = lines.next().await {
                    match line {
                        Ok(line) => {
                            let said_bye = line.contains("\"type\":\"bye\"");
                            if tx
                                .send((probe.pod.clone(), probe.node.clone(), line))
                                .await
                                .is_err()
                            {
                                return;
                            }
                            if said_bye {
                                return;
                            }
                        }
                        Err(_) => break,
                    }
                }
            }
            Err(err) => {
                failures += 1;
                tracing::info!("following the probe log on {}: {err}", probe.node);
                if err.is_not_found() || failures > 20 {
                    return;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
