//! A run plan becomes the objects a trace creates: the expiry Job that owns everything, the
//! ConfigMaps that carry the probe binary, and the probe DaemonSet. Pure: no I/O here.
//!
//! Crash safety rests on the cluster alone: the Job sleeps as long as the run may last and has
//! `activeDeadlineSeconds` as a backstop; once it finishes (Complete or Failed) the TTL-after-
//! finished controller deletes it (`ttlSecondsAfterFinished: 0`), and the garbage collector then
//! deletes the DaemonSet and ConfigMaps through their ownerReferences, and the pods through
//! theirs to the DaemonSet. No plugin and no probe needs to be alive for that.

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::ByteString;
use serde_json::{json, Value};

pub const NAME_LABEL: &str = "app.kubernetes.io/name";
pub const NAME_VALUE: &str = "realip-probe";
pub const MANAGED_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_VALUE: &str = "kubectl-realip";
pub const COMPONENT_LABEL: &str = "app.kubernetes.io/component";
pub const RUN_LABEL: &str = "kubectl-realip/run";
pub const EXPIRES_ANNOTATION: &str = "kubectl-realip/expires-at";
pub const TARGET_ANNOTATION: &str = "kubectl-realip/target";
/// Selects every object any run created.
pub const MANAGED_SELECTOR: &str = "app.kubernetes.io/managed-by=kubectl-realip";
/// The probe's container name (its log stream).
pub const PROBE_CONTAINER: &str = "probe";
/// Largest binaryData chunk per ConfigMap: the API limits a ConfigMap to 1 MiB, and the chunk
/// stays under that even base64-encoded in a JSON request.
pub const CHUNK_BYTES: usize = 700 * 1024;

/// How the probe reaches the nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// The probe this plugin carries, gzip-compressed, split into ConfigMap chunks, unpacked by a
    /// stock image into an emptyDir and run from there.
    Embedded {
        /// One gzip-compressed binary per node architecture.
        probes: Vec<Carried>,
        probe_version: String,
        base_image: String,
    },
    /// A prebuilt probe image (probe/Dockerfile) whose entrypoint is the probe binary.
    Image(String),
}

/// A compressed probe binary for one architecture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Carried {
    /// `uname -m` name: `x86_64`, `aarch64`.
    pub arch: String,
    /// Kubernetes name (`kubernetes.io/arch`): `amd64`, `arm64`; DNS-safe, used in names.
    pub kube_arch: String,
    pub gzip: Vec<u8>,
}

impl Carried {
    /// (ConfigMap name suffix, binaryData key, bytes) per chunk; keys sort in chunk order.
    fn chunks(&self) -> impl Iterator<Item = (String, String, &[u8])> {
        self.gzip.chunks(CHUNK_BYTES).enumerate().map(|(i, chunk)| {
            (
                format!("bin-{}-{i}", self.kube_arch),
                format!("probe-{}.gz.{i:02}", self.arch),
                chunk,
            )
        })
    }
}

/// Everything the objects depend on, decided before any API call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunPlan {
    /// Short random id, part of every name and the `kubectl-realip/run` label.
    pub run_id: String,
    /// Where the probe runs (the target's namespace or --probe-namespace).
    pub namespace: String,
    /// `namespace/name` of the traced Service.
    pub target: String,
    pub nodes: Vec<String>,
    /// Unix time the run starts.
    pub started_unix: i64,
    /// Seconds after the start when probes stop capturing, even if restarted.
    pub capture_secs: u64,
    /// Seconds after the start when the cluster removes everything by itself.
    pub expiry_secs: u64,
    pub l7: bool,
    /// `--evidence`: the probe also reads the node's NAT rules, conntrack and routes, and its
    /// container gets NET_ADMIN for it.
    pub evidence: bool,
    /// TCP ports the probe's kernel filter keeps (service, node and target ports).
    pub ports: Vec<u16>,
    pub delivery: Delivery,
    /// Image of the expiry Job's sleeping container (any image with `sleep`).
    pub timer_image: String,
}

impl RunPlan {
    pub fn base_name(&self) -> String {
        format!("realip-probe-{}", self.run_id)
    }

    pub fn daemon_set_name(&self) -> String {
        self.base_name()
    }

    pub fn job_name(&self) -> String {
        format!("{}-expiry", self.base_name())
    }

    /// `kubectl-realip/run=ID`: every object of this run.
    pub fn run_selector(&self) -> String {
        format!("{RUN_LABEL}={}", self.run_id)
    }

    /// When the cluster removes the run by itself (RFC 3339).
    pub fn expires_at(&self) -> String {
        let at = self
            .started_unix
            .saturating_add(i64::try_from(self.expiry_secs).unwrap_or(i64::MAX));
        k8s_openapi::jiff::Timestamp::from_second(at)
            .map(|t| t.to_string())
            .unwrap_or_else(|_| at.to_string())
    }

    fn labels(&self, component: &str) -> Value {
        json!({
            NAME_LABEL: NAME_VALUE,
            MANAGED_LABEL: MANAGED_VALUE,
            COMPONENT_LABEL: component,
            RUN_LABEL: self.run_id,
        })
    }

    fn metadata(&self, name: &str, component: &str) -> Value {
        json!({
            "name": name,
            "namespace": self.namespace,
            "labels": self.labels(component),
            "annotations": {
                EXPIRES_ANNOTATION: self.expires_at(),
                TARGET_ANNOTATION: self.target,
            },
        })
    }
}

#[derive(Debug, thiserror::Error)]
#[error("building the {kind} manifest: {source}")]
pub struct BuildError {
    kind: &'static str,
    source: serde_json::Error,
}

fn typed<T: serde::de::DeserializeOwned>(
    kind: &'static str,
    value: Value,
) -> Result<T, BuildError> {
    serde_json::from_value(value).map_err(|source| BuildError { kind, source })
}

/// The objects of one run, in creation order: Job first (its uid owns the others).
#[derive(Debug, Clone)]
pub struct Objects {
    pub job: Job,
    pub config_maps: Vec<ConfigMap>,
    pub daemon_set: DaemonSet,
}

impl Objects {
    pub fn build(plan: &RunPlan) -> Result<Objects, BuildError> {
        Ok(Objects {
            job: expiry_job(plan)?,
            config_maps: config_maps(plan)?,
            daemon_set: daemon_set(plan)?,
        })
    }

    /// Makes the Job the owner of the ConfigMaps and the DaemonSet, once it has a uid.
    pub fn owned_by_job(&mut self, job_uid: &str) {
        let owner = OwnerReference {
            api_version: "batch/v1".into(),
            kind: "Job".into(),
            name: self.job.metadata.name.clone().unwrap_or_default(),
            uid: job_uid.into(),
            controller: Some(false),
            // Setting blockOwnerDeletion needs update on jobs/finalizers: not worth a grant.
            block_owner_deletion: None,
        };
        for map in &mut self.config_maps {
            map.metadata.owner_references = Some(vec![owner.clone()]);
        }
        self.daemon_set.metadata.owner_references = Some(vec![owner]);
    }

    /// Multi-document YAML of everything, for `--dry-run`: appliable as printed, the probe's
    /// chunks included (a comment before each ConfigMap says what its base64 holds).
    pub fn to_yaml(&self) -> Result<String, YamlError> {
        let mut out = String::new();
        push_document(&mut out, &self.job, &[])?;
        for map in &self.config_maps {
            let said: Vec<String> = map
                .binary_data
                .iter()
                .flatten()
                .map(|(key, data)| {
                    format!(
                        "binaryData {key}: {} bytes of the gzip-compressed probe, in base64",
                        data.0.len()
                    )
                })
                .collect();
            push_document(&mut out, map, &said)?;
        }
        push_document(&mut out, &self.daemon_set, &[])?;
        Ok(out)
    }
}

/// Why the YAML of `--dry-run` could not be written.
#[derive(Debug, thiserror::Error)]
#[error("writing the YAML of {kind}: {message}")]
pub struct YamlError {
    kind: String,
    message: String,
}

/// Appends `object` as one YAML document, `comments` first.
///
/// The emitter quotes every string a YAML 1.1 reader (kubectl's sigs.k8s.io/yaml, PyYAML)
/// would take for something else: timestamps, `yes`/`no`/`on`/`off`, octal-looking numbers,
/// `~`. Every value the API expects as a string then stays a string.
fn push_document<T: serde::Serialize + k8s_openapi::Resource>(
    out: &mut String,
    object: &T,
    comments: &[String],
) -> Result<(), YamlError> {
    let error = |message: String| YamlError {
        kind: T::KIND.to_string(),
        message,
    };
    // Through JSON: the API's own shape (base64 for bytes, RFC 3339 for times).
    let value = serde_json::to_value(object).map_err(|err| error(err.to_string()))?;
    out.push_str("---\n");
    for comment in comments {
        out.push_str(&format!("# {comment}\n"));
    }
    out.push_str(&serde_saphyr::to_string(&value).map_err(|err| error(err.to_string()))?);
    if !out.ends_with('\n') {
        out.push('\n');
    }
    Ok(())
}

fn config_maps(plan: &RunPlan) -> Result<Vec<ConfigMap>, BuildError> {
    let Delivery::Embedded {
        probes,
        probe_version,
        ..
    } = &plan.delivery
    else {
        return Ok(Vec::new());
    };
    let mut maps = Vec::new();
    for carried in probes {
        for (suffix, key, chunk) in carried.chunks() {
            let mut meta = plan.metadata(&format!("{}-{suffix}", plan.base_name()), "delivery");
            meta["annotations"]["kubectl-realip/probe-version"] = json!(probe_version);
            let mut map: ConfigMap = typed(
                "ConfigMap",
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "immutable": true}),
            )?;
            map.binary_data = Some([(key, ByteString(chunk.to_vec()))].into());
            maps.push(map);
        }
    }
    Ok(maps)
}

fn container_security(run_as_root: bool, caps: &[&str]) -> Value {
    let capabilities = if caps.is_empty() {
        json!({"drop": ["ALL"]})
    } else {
        json!({"drop": ["ALL"], "add": caps})
    };
    json!({
        "runAsUser": if run_as_root { 0 } else { 65534 },
        "runAsNonRoot": !run_as_root,
        "allowPrivilegeEscalation": false,
        "readOnlyRootFilesystem": true,
        "capabilities": capabilities,
        "seccompProfile": {"type": "RuntimeDefault"},
    })
}

fn resources(cpu: (&str, &str), memory: (&str, &str)) -> Value {
    json!({
        "requests": {"cpu": cpu.0, "memory": memory.0},
        "limits": {"cpu": cpu.1, "memory": memory.1},
    })
}

/// The probe's arguments. Its deadline is absolute: a restarted container captures only what is
/// left of it, and nothing after it. Its stats come every second: they are the heartbeat that
/// shows how far its stream has come when the capture stops.
fn probe_args(plan: &RunPlan) -> Vec<String> {
    let deadline = plan
        .started_unix
        .saturating_add(i64::try_from(plan.capture_secs).unwrap_or(i64::MAX));
    let mut args = vec![
        "capture".to_string(),
        "--node".into(),
        "$(NODE_NAME)".into(),
        "--until".into(),
        deadline.to_string(),
        "--stats-interval".into(),
        "1".into(),
    ];
    for port in &plan.ports {
        args.push("--port".into());
        args.push(port.to_string());
    }
    if plan.l7 {
        args.push("--l7".into());
    }
    if plan.evidence {
        args.push("--evidence".into());
    }
    args
}

/// How long a stopped probe has to finish: with `--evidence` it reads the node's NAT rules once
/// more (its end snapshot, under a second for 10,000 rules; docs/performance.md).
pub fn probe_grace_secs(plan: &RunPlan) -> u64 {
    if plan.evidence {
        20
    } else {
        5
    }
}

/// The probe container's capabilities: NET_RAW for its packet sockets, and with `--evidence`
/// NET_ADMIN for the netlink dumps of NAT rules and conntrack it reads (never writes).
fn probe_caps(plan: &RunPlan) -> &'static [&'static str] {
    if plan.evidence {
        &["NET_RAW", "NET_ADMIN"]
    } else {
        &["NET_RAW"]
    }
}

fn daemon_set(plan: &RunPlan) -> Result<DaemonSet, BuildError> {
    let labels = plan.labels("probe");
    let node_env =
        json!([{"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]);
    let probe_resources = resources(("20m", "500m"), ("32Mi", "256Mi"));
    let (init_containers, containers, volumes) = match &plan.delivery {
        Delivery::Embedded {
            base_image, probes, ..
        } => {
            let sources: Vec<Value> = probes
                .iter()
                .flat_map(Carried::chunks)
                .map(|(suffix, _, _)| {
                    json!({"configMap": {"name": format!("{}-{suffix}", plan.base_name())}})
                })
                .collect();
            let unpack = "set -eo pipefail\n\
                arch=$(uname -m)\n\
                ls /delivery/probe-$arch.gz.* >/dev/null 2>&1 || { echo \"no realip-probe for $arch in this plugin; use --image\" >&2; exit 1; }\n\
                cat /delivery/probe-$arch.gz.* | gunzip > /probe/realip-probe\n\
                chmod 0555 /probe/realip-probe\n";
            (
                json!([{
                    "name": "unpack",
                    "image": base_image,
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["sh", "-c", unpack],
                    "securityContext": container_security(false, &[]),
                    "resources": resources(("10m", "100m"), ("16Mi", "64Mi")),
                    "volumeMounts": [
                        {"name": "delivery", "mountPath": "/delivery", "readOnly": true},
                        {"name": "probe", "mountPath": "/probe"},
                    ],
                }]),
                json!([{
                    "name": PROBE_CONTAINER,
                    "image": base_image,
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["/probe/realip-probe"],
                    "args": probe_args(plan),
                    "env": node_env,
                    "securityContext": container_security(true, probe_caps(plan)),
                    "resources": probe_resources,
                    "volumeMounts": [{"name": "probe", "mountPath": "/probe", "readOnly": true}],
                }]),
                json!([
                    {"name": "delivery", "projected": {"sources": sources}},
                    {"name": "probe", "emptyDir": {"sizeLimit": "64Mi"}},
                ]),
            )
        }
        Delivery::Image(image) => (
            json!([]),
            json!([{
                "name": PROBE_CONTAINER,
                "image": image,
                "imagePullPolicy": "IfNotPresent",
                // The image's entrypoint is the probe (probe/Dockerfile: /realip-probe).
                "args": probe_args(plan),
                "env": node_env,
                "securityContext": container_security(true, probe_caps(plan)),
                "resources": probe_resources,
            }]),
            json!([]),
        ),
    };
    typed(
        "DaemonSet",
        json!({
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": plan.metadata(&plan.daemon_set_name(), "probe"),
            "spec": {
                "selector": {"matchLabels": {NAME_LABEL: NAME_VALUE, RUN_LABEL: plan.run_id}},
                "revisionHistoryLimit": 1,
                "template": {
                    "metadata": {"labels": labels, "annotations": {TARGET_ANNOTATION: plan.target}},
                    "spec": {
                        "hostNetwork": true,
                        "dnsPolicy": "ClusterFirstWithHostNet",
                        "automountServiceAccountToken": false,
                        "enableServiceLinks": false,
                        "terminationGracePeriodSeconds": probe_grace_secs(plan),
                        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                        // Every taint: the probe must run wherever traffic lands.
                        "tolerations": [{"operator": "Exists"}],
                        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [{"matchFields": [
                                {"key": "metadata.name", "operator": "In", "values": plan.nodes}
                            ]}]
                        }}},
                        "initContainers": init_containers,
                        "containers": containers,
                        "volumes": volumes,
                    },
                },
            },
        }),
    )
}

fn expiry_job(plan: &RunPlan) -> Result<Job, BuildError> {
    typed(
        "Job",
        json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": plan.metadata(&plan.job_name(), "expiry"),
            "spec": {
                "activeDeadlineSeconds": plan.expiry_secs,
                "ttlSecondsAfterFinished": 0,
                "backoffLimit": 0,
                "template": {
                    "metadata": {"labels": plan.labels("expiry")},
                    "spec": {
                        "restartPolicy": "Never",
                        "automountServiceAccountToken": false,
                        "enableServiceLinks": false,
                        "terminationGracePeriodSeconds": 0,
                        "securityContext": {
                            "runAsNonRoot": true,
                            "runAsUser": 65534,
                            "seccompProfile": {"type": "RuntimeDefault"},
                        },
                        "containers": [{
                            "name": "timer",
                            "image": plan.timer_image,
                            "imagePullPolicy": "IfNotPresent",
                            "command": ["sleep", plan.expiry_secs.to_string()],
                            "securityContext": container_security(false, &[]),
                            "resources": resources(("1m", "10m"), ("8Mi", "16Mi")),
                        }],
                    },
                },
            },
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn plan(delivery: Delivery) -> RunPlan {
        RunPlan {
            run_id: "a1b2c3".into(),
            namespace: "shop".into(),
            target: "shop/web".into(),
            nodes: vec!["node-a".into(), "node-b".into()],
            started_unix: 1_800_000_000,
            capture_secs: 180,
            expiry_secs: 480,
            l7: true,
            evidence: false,
            ports: vec![80, 8080, 31080],
            delivery,
            timer_image: "busybox:1.37".into(),
        }
    }

    fn carried(arch: &str, kube_arch: &str, gzip: Vec<u8>) -> Carried {
        Carried {
            arch: arch.into(),
            kube_arch: kube_arch.into(),
            gzip,
        }
    }

    fn embedded(bytes: usize) -> Delivery {
        Delivery::Embedded {
            probes: vec![
                carried("x86_64", "amd64", vec![7; bytes]),
                carried("aarch64", "arm64", vec![8; 10]),
            ],
            probe_version: "0.1.0".into(),
            base_image: "busybox:1.37".into(),
        }
    }

    #[test]
    fn embedded_delivery_manifests() {
        assert_eq!(
            Objects::build(&plan(embedded(CHUNK_BYTES + 10)))
                .unwrap()
                .config_maps
                .len(),
            3
        );
        let mut objects = Objects::build(&plan(embedded(10))).unwrap();
        objects.owned_by_job("uid-of-job");
        insta::assert_snapshot!(objects.to_yaml().unwrap());
    }

    /// Whatever a string holds, a YAML 1.1 reader (kubectl, PyYAML) reads it back as that
    /// string: timestamps, booleans of old, octal-looking numbers, null spellings.
    #[test]
    fn strings_stay_strings_for_yaml_1_1_readers() {
        let mut plan = plan(Delivery::Image(
            "registry.example/realip-probe:0.1.0".into(),
        ));
        for tricky in [
            "2027-01-15T08:08:00Z",
            "2027-01-15",
            "yes",
            "No",
            "on",
            "OFF",
            "y",
            "~",
            "null",
            "0755",
            "1:20",
            "1_000",
            "0x1F",
            ".inf",
            "1e3",
            "true",
            "-",
            "<<",
            "a: b",
            "#x",
        ] {
            plan.target = tricky.to_string();
            let yaml = Objects::build(&plan).unwrap().to_yaml().unwrap();
            let line = yaml
                .lines()
                .find(|l| l.trim_start().starts_with("kubectl-realip/target:"))
                .unwrap();
            let value = line.split_once(": ").unwrap().1;
            let quoted = (value.starts_with('"') && value.ends_with('"'))
                || (value.starts_with('\'') && value.ends_with('\''));
            assert!(quoted, "{tricky:?} written as {value}");
        }
    }

    #[test]
    fn image_delivery_manifests() {
        let objects = Objects::build(&plan(Delivery::Image(
            "registry.example/realip-probe:0.1.0".into(),
        )))
        .unwrap();
        assert!(objects.config_maps.is_empty());
        insta::assert_yaml_snapshot!(objects.daemon_set);
    }

    #[test]
    fn chunks_stay_under_the_configmap_limit_and_reassemble() {
        let gzip: Vec<u8> = (0..3 * CHUNK_BYTES + 5).map(|i| (i % 251) as u8).collect();
        let plan = plan(Delivery::Embedded {
            probes: vec![carried("x86_64", "amd64", gzip.clone())],
            probe_version: "0.1.0".into(),
            base_image: "busybox".into(),
        });
        let maps = config_maps(&plan).unwrap();
        assert_eq!(maps.len(), 4);
        let mut keys = Vec::new();
        let mut joined = Vec::new();
        for map in &maps {
            let data = map.binary_data.as_ref().unwrap();
            assert_eq!(data.len(), 1);
            let (key, chunk) = data.iter().next().unwrap();
            assert!(chunk.0.len() <= CHUNK_BYTES);
            // base64 in a JSON request must stay under the 1 MiB object limit.
            assert!(chunk.0.len().div_ceil(3) * 4 < 1024 * 1024);
            keys.push(key.clone());
            joined.extend_from_slice(&chunk.0);
        }
        assert_eq!(joined, gzip);
        // The shell glob that reassembles them sorts the keys in chunk order.
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
    }

    /// `--evidence` adds the flag, NET_ADMIN beside NET_RAW (still dropping every other
    /// capability) and a longer grace for the end snapshot; without it, neither.
    #[test]
    fn evidence_adds_net_admin_and_the_flag() {
        for evidence in [false, true] {
            let mut plan = plan(embedded(1));
            plan.evidence = evidence;
            let ds = serde_json::to_value(daemon_set(&plan).unwrap()).unwrap();
            let spec = &ds["spec"]["template"]["spec"];
            let probe = &spec["containers"][0];
            let caps = &probe["securityContext"]["capabilities"];
            assert_eq!(caps["drop"], json!(["ALL"]));
            let added = if evidence {
                json!(["NET_RAW", "NET_ADMIN"])
            } else {
                json!(["NET_RAW"])
            };
            assert_eq!(caps["add"], added);
            let has_flag = probe["args"]
                .as_array()
                .unwrap()
                .contains(&json!("--evidence"));
            assert_eq!(has_flag, evidence);
            let grace = if evidence { 20 } else { 5 };
            assert_eq!(spec["terminationGracePeriodSeconds"], grace);
            // The init container that unpacks the probe gets nothing.
            assert_eq!(
                spec["initContainers"][0]["securityContext"]["capabilities"],
                json!({"drop": ["ALL"]})
            );
        }
    }

    /// Both deliveries hand the probe the same absolute deadline: a restarted container
    /// captures only what is left of the run.
    #[test]
    fn deadline_is_absolute() {
        for delivery in [
            embedded(1),
            Delivery::Image("registry.example/realip-probe:0.1.0".into()),
        ] {
            let ds = serde_json::to_value(daemon_set(&plan(delivery)).unwrap()).unwrap();
            let probe = &ds["spec"]["template"]["spec"]["containers"][0];
            assert_eq!(
                probe["args"],
                json!([
                    "capture",
                    "--node",
                    "$(NODE_NAME)",
                    "--until",
                    "1800000180",
                    "--stats-interval",
                    "1",
                    "--port",
                    "80",
                    "--port",
                    "8080",
                    "--port",
                    "31080",
                    "--l7"
                ]),
                "{probe}"
            );
        }
    }
}
