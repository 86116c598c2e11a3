//! Issue 7, must-show 1 (the Rust half; scripts/validate_k8s.sh validates the schemas): every
//! Kubernetes overlay is rendered by kubectl's kustomize, and the cluster.toml its ConfigMap
//! carries is loaded with the real loader (`ClusterConfig::load_with_env`, validation included).
//! The rendered workloads are checked against what the binaries read: the environment variables
//! of `WorkerArgs`, the coordinator's Service and port, the token Secret, gRPC probes, and the
//! security context.
//!
//! Needs `kubectl`; without it the test says NOT RUN, unless LASER_REQUIRE_KUBECTL=1 (CI), which
//! makes it fail.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use laser_config::TokenSource;
use laser_config::TransportPref;
use laser_config::{ClusterConfig, ClusterMode, ComputeBackend};
use laser_integration_tests::{run_bounded, temp_dir, tiny_model_dir, workspace};
use serde_yaml::Value;

/// Environment variables `WorkerArgs` (and the role binaries) read.
const WORKER_ENV: &[&str] = &[
    "LASER_COORDINATOR",
    "LASER_WORKER_NAME",
    "LASER_LISTEN",
    "LASER_ADVERTISE",
    "LASER_TOKEN_FILE",
    "LASER_MAX_MESSAGE_MB",
    "LASER_CONTROL_TIMEOUT_MS",
    "LASER_DRAIN_TIMEOUT_S",
    "LASER_CLUSTER_TOKEN",
    "LASER_CUDA_DEVICE",
];

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else if e.file_name() != "token.env" {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

fn kubectl_present() -> bool {
    Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn render(dir: &Path) -> Vec<Value> {
    let (status, out, err) = run_bounded(
        Command::new("kubectl").arg("kustomize").arg(dir),
        Duration::from_secs(60),
    );
    assert!(
        status.success(),
        "kubectl kustomize {}: {err}",
        dir.display()
    );
    serde_yaml::Deserializer::from_str(&out)
        .map(|d| Value::deserialize(d).expect("a YAML document"))
        .collect()
}

use serde::Deserialize;

fn kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn name(d: &Value) -> &str {
    d["metadata"]["name"].as_str().unwrap_or("")
}

fn container(workload: &Value) -> &Value {
    &workload["spec"]["template"]["spec"]["containers"][0]
}

fn env_value<'a>(c: &'a Value, key: &str) -> Option<&'a Value> {
    c["env"].as_sequence()?.iter().find(|e| e["name"] == key)
}

/// The learner StatefulSet against `cluster.learner_ranks`: one pod per rank, each pod's rank its
/// ordinal (`learner serve` reads LASER_LEARNER_RANK), and with several ranks one shared
/// ReadWriteMany run directory (rank 0 writes the checkpoints every rank resumes from) and pods
/// that start together (the gradient ring needs all of them).
fn learner_checked(oname: &str, w: &Value, docs: &[Value], learner_ranks: u32) {
    assert_eq!(
        w["spec"]["replicas"].as_u64(),
        Some(u64::from(learner_ranks)),
        "{oname}: learner replicas vs cluster.learner_ranks"
    );
    let rank = env_value(container(w), "LASER_LEARNER_RANK")
        .unwrap_or_else(|| panic!("{oname}: the learner has no LASER_LEARNER_RANK"));
    assert_eq!(
        rank["valueFrom"]["fieldRef"]["fieldPath"].as_str(),
        Some("metadata.labels['apps.kubernetes.io/pod-index']"),
        "{oname}: the rank is the pod's ordinal"
    );
    if learner_ranks == 1 {
        return;
    }
    assert_eq!(
        w["spec"]["podManagementPolicy"].as_str(),
        Some("Parallel"),
        "{oname}"
    );
    assert!(
        w["spec"]["volumeClaimTemplates"].is_null(),
        "{oname}: a volume per rank would leave ranks > 0 without the checkpoints"
    );
    let volumes = w["spec"]["template"]["spec"]["volumes"]
        .as_sequence()
        .unwrap();
    let run = volumes
        .iter()
        .find(|v| v["name"] == "run")
        .unwrap_or_else(|| panic!("{oname}: no `run` volume"));
    let claim = run["persistentVolumeClaim"]["claimName"]
        .as_str()
        .unwrap_or_else(|| panic!("{oname}: the run volume is not a claim"));
    let pvcs = kind(docs, "PersistentVolumeClaim");
    let pvc = pvcs
        .iter()
        .find(|d| name(d) == claim)
        .unwrap_or_else(|| panic!("{oname}: no claim {claim}"));
    assert_eq!(
        pvc["spec"]["accessModes"][0].as_str(),
        Some("ReadWriteMany"),
        "{oname}: {claim} is shared by the ranks"
    );
}

#[test]
fn overlays_render_and_their_cluster_toml_loads_with_the_real_loader() {
    if !kubectl_present() {
        assert!(
            std::env::var_os("LASER_REQUIRE_KUBECTL").is_none(),
            "kubectl is required (LASER_REQUIRE_KUBECTL is set)"
        );
        eprintln!("NOT RUN: kubectl not found; the Kubernetes manifests were not checked");
        return;
    }
    let dir = temp_dir("k8s");
    // A copy of deploy/k8s with a throwaway token.env (the real one is git-ignored).
    let k8s = dir.join("k8s");
    copy_dir(&workspace().join("deploy/k8s"), &k8s);
    std::fs::write(
        k8s.join("base/token.env"),
        "token=render-only-token-0123456789\n",
    )
    .unwrap();
    // The image bakes the model at /opt/laser/models/tiny; here a locally written one stands in.
    let model = tiny_model_dir(&dir);

    let overlays: Vec<PathBuf> = std::fs::read_dir(k8s.join("overlays"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(
        overlays.len() >= 3,
        "cpu-demo, data-parallel and gpu overlays"
    );
    for overlay in overlays {
        let oname = overlay.file_name().unwrap().to_string_lossy().into_owned();
        let docs = render(&overlay);

        // The ConfigMap's cluster.toml, through the real loader.
        let cms = kind(&docs, "ConfigMap");
        let cm = cms
            .iter()
            .find(|d| name(d).starts_with("laser-cluster"))
            .unwrap_or_else(|| panic!("{oname}: no laser-cluster ConfigMap"));
        let text = cm["data"]["cluster.toml"]
            .as_str()
            .unwrap_or_else(|| panic!("{oname}: ConfigMap without cluster.toml"));
        let path = dir.join(format!("{oname}-cluster.toml"));
        std::fs::write(&path, text).unwrap();
        let raw = ClusterConfig::from_toml_with_env(text, &oname, std::iter::empty())
            .unwrap_or_else(|e| panic!("{oname}: {e}"));
        assert_eq!(
            raw.model.path.as_deref(),
            Some(Path::new("/opt/laser/models/tiny")),
            "{oname}: the model deploy/Dockerfile bakes in"
        );
        // The gpu overlay computes on the GPU; the others on the CPU.
        let want = if oname == "gpu" {
            ComputeBackend::Cuda
        } else {
            ComputeBackend::Cpu
        };
        assert_eq!(raw.model.backend, want, "{oname}: model.backend");
        let cfg = ClusterConfig::load_with_env(
            &path,
            [(
                "LASER__MODEL__PATH".to_string(),
                model.display().to_string(),
            )],
        )
        .unwrap_or_else(|e| panic!("{oname}: the ConfigMap's cluster.toml: {e}"));
        assert_eq!(cfg.cluster.mode, ClusterMode::External, "{oname}");
        assert_eq!(
            cfg.cluster.token,
            Some(TokenSource::Env("LASER_CLUSTER_TOKEN".into())),
            "{oname}"
        );
        assert!(cfg.cluster.listen.ends_with(":50051"), "{oname}");
        assert_eq!(cfg.run.dir, Path::new("/var/lib/laser/run"), "{oname}");
        assert!(
            cfg.algorithm.c_ref.is_some(),
            "{oname}: actors cannot read the learner's c_ref.json"
        );
        assert_eq!(
            cfg.warmstart.steps, 0,
            "{oname}: no warm start in external mode"
        );
        assert!(cfg.model.init.is_none(), "{oname}");

        // The Secret the pods read the token from.
        let secrets = kind(&docs, "Secret");
        let secret = secrets
            .iter()
            .find(|d| name(d).starts_with("laser-cluster-token"))
            .unwrap_or_else(|| panic!("{oname}: no token Secret"));
        assert!(
            secret["data"]["token"].is_string(),
            "{oname}: Secret key `token`"
        );

        // The coordinator's Service is what LASER_COORDINATOR names.
        let services = kind(&docs, "Service");
        let svc = services
            .iter()
            .find(|d| name(d) == "laser-coordinator")
            .unwrap_or_else(|| panic!("{oname}: no laser-coordinator Service"));
        assert_eq!(svc["spec"]["ports"][0]["port"], 50051);

        // Prometheus finds /metrics by the coordinator pod's annotations, on the port the
        // cluster.toml serves it on, and the NetworkPolicy lets it in there.
        let metrics_port = cfg
            .cluster
            .metrics_listen
            .as_deref()
            .and_then(|l| l.rsplit(':').next())
            .unwrap_or_else(|| panic!("{oname}: cluster.metrics_listen is unset"))
            .to_string();
        let coord = kind(&docs, "Deployment")
            .into_iter()
            .find(|d| name(d) == "laser-coordinator")
            .unwrap_or_else(|| panic!("{oname}: no laser-coordinator Deployment"));
        let ann = &coord["spec"]["template"]["metadata"]["annotations"];
        assert_eq!(ann["prometheus.io/scrape"], "true", "{oname}");
        assert_eq!(ann["prometheus.io/path"], "/metrics", "{oname}");
        assert_eq!(ann["prometheus.io/port"], metrics_port.as_str(), "{oname}");
        let policy = kind(&docs, "NetworkPolicy")
            .into_iter()
            .find(|d| name(d) == "laser-coordinator")
            .unwrap_or_else(|| panic!("{oname}: no laser-coordinator NetworkPolicy"));
        let open = policy["spec"]["ingress"]
            .as_sequence()
            .unwrap()
            .iter()
            .flat_map(|r| r["ports"].as_sequence().cloned().unwrap_or_default())
            .any(|p| p["port"].as_u64().map(|n| n.to_string()) == Some(metrics_port.clone()));
        assert!(
            open,
            "{oname}: the coordinator's NetworkPolicy admits port {metrics_port}"
        );

        let mut workloads: Vec<&Value> = kind(&docs, "Deployment");
        workloads.extend(kind(&docs, "StatefulSet"));
        let mut roles = Vec::new();
        for w in workloads {
            let wname = name(w).to_string();
            let role = w["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]
                .as_str()
                .unwrap_or("")
                .to_string();
            roles.push(role.clone());
            let pod = &w["spec"]["template"]["spec"];
            let c = container(w);
            assert_eq!(
                pod["securityContext"]["runAsNonRoot"], true,
                "{oname}/{wname}"
            );
            assert_eq!(
                c["securityContext"]["readOnlyRootFilesystem"], true,
                "{oname}/{wname}"
            );
            assert_eq!(
                c["securityContext"]["allowPrivilegeEscalation"], false,
                "{oname}/{wname}"
            );
            for probe in ["readinessProbe", "livenessProbe"] {
                assert_eq!(c[probe]["grpc"]["port"], 50051, "{oname}/{wname} {probe}");
            }
            assert!(c["resources"]["requests"].is_mapping(), "{oname}/{wname}");
            assert!(c["resources"]["limits"].is_mapping(), "{oname}/{wname}");
            let token = env_value(c, "LASER_CLUSTER_TOKEN")
                .unwrap_or_else(|| panic!("{oname}/{wname}: no LASER_CLUSTER_TOKEN"));
            assert_eq!(
                token["valueFrom"]["secretKeyRef"]["name"].as_str(),
                Some(name(secret)),
                "{oname}/{wname}"
            );
            if role == "coordinator" {
                continue;
            }
            // A worker: the variables WorkerArgs reads, pointing at the coordinator's Service.
            assert_eq!(
                env_value(c, "LASER_COORDINATOR").map(|e| &e["value"]),
                Some(&Value::from("laser-coordinator:50051")),
                "{oname}/{wname}"
            );
            assert_eq!(
                env_value(c, "LASER_LISTEN").map(|e| &e["value"]),
                Some(&Value::from("0.0.0.0:50051")),
                "{oname}/{wname}"
            );
            assert!(
                env_value(c, "LASER_WORKER_NAME").is_some(),
                "{oname}/{wname}"
            );
            assert!(env_value(c, "LASER_ADVERTISE").is_some(), "{oname}/{wname}");
            for e in c["env"].as_sequence().unwrap() {
                let n = e["name"].as_str().unwrap();
                assert!(
                    WORKER_ENV.contains(&n)
                        || (role == "learner" && n == "LASER_LEARNER_RANK")
                        || ["POD_NAME", "POD_IP", "RUST_LOG"].contains(&n)
                        || n.starts_with("NCCL_")
                        || n.starts_with("LASER__"),
                    "{oname}/{wname}: {n} is read by nothing"
                );
            }
            let args: Vec<&str> = c["args"]
                .as_sequence()
                .unwrap()
                .iter()
                .filter_map(|a| a.as_str())
                .collect();
            assert_eq!(args.get(1), Some(&"serve"), "{oname}/{wname}: {args:?}");
            if role != "verifier" {
                assert!(
                    args.windows(2)
                        .any(|w| w == ["--cluster", "/etc/laser/cluster.toml"]),
                    "{oname}/{wname}: {args:?}"
                );
            }
            if role == "learner" {
                learner_checked(&oname, w, &docs, cfg.cluster.learner_ranks);
            }
            if oname == "gpu" && (role == "actor" || role == "learner") {
                assert_eq!(
                    c["resources"]["limits"]["nvidia.com/gpu"], 1,
                    "{oname}/{wname}"
                );
            }
        }
        roles.sort();
        assert_eq!(
            roles,
            ["actor", "coordinator", "learner", "verifier"],
            "{oname}"
        );
        for k in [
            "PersistentVolumeClaim",
            "HorizontalPodAutoscaler",
            "NetworkPolicy",
            "PodDisruptionBudget",
        ] {
            assert!(!kind(&docs, k).is_empty(), "{oname}: no {k}");
        }
        if oname == "gpu" {
            assert_eq!(cfg.cluster.weight_transport, TransportPref::Nccl);
            assert_eq!(cfg.cluster.learner_collective, TransportPref::Nccl);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
