//! Before anything is created: the Service, its EndpointSlices and the nodes read once, the
//! topology and the nodes to probe worked out, and the run plan (or, with `--dry-run`, its
//! objects printed).

use crate::cluster::explain_reads::Known;
use crate::cluster::{Cluster, KubeError};
use crate::error::{Failure, Kind, Result};
use crate::explain::facts::Protocol;
use crate::trace::manifests::{Delivery, Objects, RunPlan};
use crate::trace::topology::{self, Choice, Topology, TopologyError};
use crate::trace::Request;
use crate::trace::TraceOptions;
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::ResourceExt;
use std::collections::{BTreeMap, BTreeSet};

/// Reads the Service, its EndpointSlices and the nodes; works out the topology and the nodes to
/// probe. What was read is kept for explain.
pub(super) async fn resolve(
    cluster: &Cluster,
    namespace: &str,
    name: &str,
    args: &Request,
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
pub(super) fn make_plan(
    args: &Request,
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

pub(super) fn dry_run_text(
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
