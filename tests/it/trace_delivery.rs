//! The probe delivery really works: the ConfigMap chunks a run creates, unpacked by the init
//! container's own script, give back the binary this plugin carries, and it runs.

use kubectl_realip::trace::manifests::{Carried, Delivery, Objects, RunPlan};
use std::process::Command;

use crate::support::kernel;

#[test]
fn configmap_chunks_unpack_into_the_carried_probe() {
    let test = "configmap_chunks_unpack_into_the_carried_probe";
    let carried = kubectl_realip::embedded::probes().first();
    let missing = match carried {
        None => Some("this build carries no probe (REALIP_PROBE_EMBED=none or not Linux)".into()),
        // bash stands in for busybox sh: both have pipefail.
        Some(_) if !kernel::has_tool("bash") => Some("no `bash` on PATH".into()),
        Some(_) => None,
    };
    let (true, Some(carried)) = (kernel::runnable(test, missing), carried) else {
        return;
    };
    let plan = RunPlan {
        run_id: "d3l1v3".into(),
        namespace: "shop".into(),
        target: "shop/web".into(),
        nodes: vec!["node-a".into()],
        started_unix: 0,
        capture_secs: 60,
        expiry_secs: 120,
        l7: false,
        evidence: false,
        ports: vec![80],
        delivery: Delivery::Embedded {
            probes: vec![Carried {
                arch: carried.arch.into(),
                kube_arch: carried.kube_arch().into(),
                gzip: carried.gzip.to_vec(),
            }],
            probe_version: "0.1.0".into(),
            base_image: "busybox:1.37".into(),
        },
        timer_image: "busybox:1.37".into(),
    };
    let objects = Objects::build(&plan).unwrap();

    // Lay the projected volume out as the kubelet would: every ConfigMap key a file.
    let root = tempfile::tempdir().unwrap();
    let delivery = root.path().join("delivery");
    let probe_dir = root.path().join("probe");
    std::fs::create_dir_all(&delivery).unwrap();
    std::fs::create_dir_all(&probe_dir).unwrap();
    for map in &objects.config_maps {
        for (key, data) in map.binary_data.iter().flatten() {
            std::fs::write(delivery.join(key), &data.0).unwrap();
        }
    }
    let spec = objects.daemon_set.spec.unwrap().template.spec.unwrap();
    let unpack = &spec.init_containers.unwrap()[0].command.clone().unwrap()[2];
    let script = unpack
        .replace("/delivery", &delivery.display().to_string())
        .replace("/probe/", &format!("{}/", probe_dir.display()));
    let status = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .status()
        .unwrap();
    assert!(status.success(), "{script}");

    let unpacked = std::fs::read(probe_dir.join("realip-probe")).unwrap();
    assert_eq!(unpacked, carried.binary().unwrap());
    let version = Command::new(probe_dir.join("realip-probe"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(version.status.success());
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("realip-probe "));

    // A node of an architecture this plugin does not carry gets a clear message, not a crash loop.
    let other = script.replace("arch=$(uname -m)", "arch=riscv64");
    let output = Command::new("bash").arg("-c").arg(&other).output().unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("no realip-probe for riscv64"));
}
