//! The release image, built without a container engine and run the way a node would run it.
//!
//! `image/build.sh` (`make image`) builds the static release binary and assembles the image with crane; each test
//! here runs it first (a no-op cargo check and a few seconds of crane when nothing changed) and reads what it
//! wrote: the OCI layout and the docker-style tarball under `target/image/`. The image's filesystem is unpacked
//! with `crane export` and its entrypoint runs in a chroot as the image's user, with only what a kubelet adds
//! (`/etc/hosts`, `/etc/resolv.conf`, a kubeconfig standing for the ServiceAccount mount): `--version`, then `run`
//! against a real kube-apiserver and the Google emulator, reached by name through the image's own name lookup
//! (files, then DNS from a resolver the test runs). The Dockerfile is read and compared with the built image.
//!
//! chroot needs root, as `make test` has in CI.

#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{Patch, PatchParams};
use litellm_operator_api::LiteLLMDeployment;
use litellm_operator_gcp::{
    Gcp, GcpConfig, SecretName, SecretPayload, SecretStore as _, SecretVersionStore as _,
};
use litellm_operator_tests::fixtures::{self, RUNBOOK_CREDENTIAL_KEYS};
use litellm_operator_tests::{
    ControlPlane, FIELD_MANAGER, install_litellm_crd, is_ready, pinned, read_repo_file, repo_path,
};
use serde_json::{Value, json};

/// The image's user, as the chart's pod security context runs it.
const USER: &str = "65532:65532";

/// Where the binary is in the image.
const BINARY: &str = "/usr/local/bin/litellm-operator";

/// The name the operator in the chroot reaches the emulator by: only the test's DNS resolver knows it.
const EMULATOR_HOST: &str = "gcp-emulator.image.test";

/// Every entry of the image's filesystem: path, type and mode, all owned by root.
const FILESYSTEM: [(&str, char, u32); 12] = [
    ("/etc", 'd', 0o755),
    ("/etc/group", 'f', 0o644),
    ("/etc/nsswitch.conf", 'f', 0o644),
    ("/etc/passwd", 'f', 0o644),
    ("/etc/ssl", 'd', 0o755),
    ("/etc/ssl/certs", 'd', 0o755),
    ("/etc/ssl/certs/ca-certificates.crt", 'f', 0o644),
    ("/tmp", 'd', 0o1777),
    ("/usr", 'd', 0o755),
    ("/usr/local", 'd', 0o755),
    ("/usr/local/bin", 'd', 0o755),
    (BINARY, 'f', 0o755),
];

// ---------------------------------------------------------------------------------------------
// The image as built

#[test]
fn the_image_is_configured_to_run_as_nonroot_with_the_workspace_labels() {
    let image = image();
    let config = &image.config;
    assert_eq!(config["os"], "linux");
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    assert_eq!(
        config["architecture"], arch,
        "the platform of the machine that built it"
    );
    let run = &config["config"];
    assert_eq!(run["User"], USER);
    assert_eq!(run["Entrypoint"], json!([BINARY]));
    assert_eq!(run["Cmd"], json!(["run"]));
    assert_eq!(run["ExposedPorts"], json!({"8080/tcp": {}}));
    let labels = &run["Labels"];
    assert_eq!(labels["org.opencontainers.image.title"], "litellm-operator");
    assert_eq!(
        labels["org.opencontainers.image.version"],
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(
        labels["org.opencontainers.image.licenses"],
        env!("CARGO_PKG_LICENSE")
    );
    assert_eq!(
        labels["org.opencontainers.image.source"],
        workspace_package("repository").as_str()
    );
    let revision = labels["org.opencontainers.image.revision"].as_str().unwrap();
    if let Some(expected) = std::env::var("IMAGE_REVISION").ok().or_else(git_head) {
        assert_eq!(revision, expected, "the revision label is the commit checked out");
    }

    // The tarball for `docker load` holds the image of the OCI layout: the same config, the same layer.
    let manifest: Value = serde_json::from_slice(&tar_member(&image.tarball, "manifest.json")).unwrap();
    let tarball_config = tar_member(&image.tarball, manifest[0]["Config"].as_str().unwrap());
    assert_eq!(tarball_config, image.config_bytes);
    let repository = std::env::var("IMAGE_REPOSITORY").unwrap_or_else(|_| chart_image_repository());
    assert_eq!(
        manifest[0]["RepoTags"],
        json!([format!("{repository}:{}", env!("CARGO_PKG_VERSION"))]),
        "the tarball is tagged with the chart's image.repository and the version"
    );
    assert_eq!(
        image.manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(image.manifest["layers"].as_array().unwrap().len(), 1);
}

#[test]
fn the_filesystem_is_the_static_binary_certificates_and_a_nonroot_user_owned_by_root() {
    let image = image();
    let root = unpack(image);
    let root = root.path();

    let mut found = Vec::new();
    walk(root, root, &mut found);
    let expected: Vec<(String, char, u32, u32, u32)> = FILESYSTEM
        .iter()
        .map(|(path, kind, mode)| ((*path).to_owned(), *kind, *mode, 0, 0))
        .collect();
    assert_eq!(found, expected, "(path, type, mode, uid, gid) of every entry");

    // The binary cargo built, with no program interpreter: it needs no loader and no libc from the image.
    let binary = std::fs::read(root.join(&BINARY[1..])).unwrap();
    assert_eq!(binary, std::fs::read(&image.binary).unwrap());
    assert!(
        !program_header_types(&binary).contains(&PT_INTERP),
        "the binary asks for a dynamic loader"
    );

    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    assert!(
        passwd.lines().any(|l| l.starts_with("nonroot:x:65532:65532:")),
        "{passwd}"
    );
    let group = std::fs::read_to_string(root.join("etc/group")).unwrap();
    assert!(group.lines().any(|l| l == "nonroot:x:65532:"), "{group}");
    let nsswitch = std::fs::read_to_string(root.join("etc/nsswitch.conf")).unwrap();
    assert!(
        nsswitch
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["hosts:", "files", "dns"]),
        "{nsswitch}"
    );
    let certificates = std::fs::read_to_string(root.join("etc/ssl/certs/ca-certificates.crt")).unwrap();
    let count = certificates.matches("-----BEGIN CERTIFICATE-----").count();
    assert!(count >= 50, "only {count} CA certificates");
}

#[test]
fn the_entrypoint_runs_as_the_image_user_in_a_chroot_and_reports_the_version() {
    require_root();
    let image = image();
    let root = unpack(image);
    let out = entrypoint(image, root.path(), &["--version"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with("litellm-operator ") && stdout.contains(env!("CARGO_PKG_VERSION")),
        "{stdout}"
    );
    // `litellm-operator 0.1.0 (abc1234)`: the revision it shows is the one the label names.
    if let Some((_, shown)) = stdout.trim().split_once(" (") {
        let shown = shown.trim_end_matches(')');
        let label = image.config["config"]["Labels"]["org.opencontainers.image.revision"]
            .as_str()
            .unwrap();
        assert!(
            label.starts_with(shown),
            "--version shows revision {shown}, the label {label}"
        );
    }
}

/// The demo's stack (`examples/litellm-deployment.yaml`: eleven credentials, one of them another team's secret
/// that the tenancy policy lets this namespace use, public) goes Ready under the image's entrypoint, with the
/// chart's arguments.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_entrypoint_in_a_chroot_runs_the_demo_stack_to_ready() {
    require_root();
    let image = image();
    let root = unpack(image);
    let root = root.path();
    let cp = ControlPlane::shared().await.unwrap();
    let client = cp.client().unwrap();
    install_litellm_crd(&client).await.unwrap();
    let ns = cp.namespace("image").await.unwrap();
    let emulator = gcp_emulator::spawn(gcp_emulator::Config {
        revision_startup: Duration::from_millis(300),
        service_accounts: vec![litellm_operator_tests::fixtures::RUNTIME_SA.to_owned()],
        ..gcp_emulator::Config::default()
    })
    .await
    .unwrap();

    // The demo's inputs: the Kubernetes Secret with the credentials, and another team's Google secret.
    let data: BTreeMap<String, String> = RUNBOOK_CREDENTIAL_KEYS
        .iter()
        .map(|key| ((*key).to_owned(), format!("{key}-v4lu3")))
        .collect();
    Api::<Secret>::namespaced(client.clone(), &ns)
        .patch(
            "litellm-credentials",
            &PatchParams::apply(FIELD_MANAGER),
            &Patch::Apply(json!({
                "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "litellm-credentials"},
                "stringData": data,
            })),
        )
        .await
        .unwrap();
    let gcp = Gcp::connect(
        &GcpConfig::emulator(emulator.url().parse().unwrap()),
        &mut Default::default(),
    )
    .await
    .unwrap();
    let tavily = SecretName::new(fixtures::PROJECT, "tavily-api-key");
    gcp.create_secret(&tavily, &Default::default()).await.unwrap();
    gcp.add_version(&tavily, &SecretPayload::new(b"tvly-v4lu3".to_vec()))
        .await
        .unwrap();

    // What a kubelet adds to the container: /etc/hosts (localhost only here), /etc/resolv.conf (the cluster's
    // DNS: here a resolver that knows the emulator's name), the API server's address and credentials, and the
    // chart's ConfigMap with the tenancy policy.
    let resolver = Resolver::start(EMULATOR_HOST, Ipv4Addr::LOCALHOST).await;
    std::fs::write(root.join("etc/hosts"), "127.0.0.1\tlocalhost\n").unwrap();
    std::fs::write(
        root.join("etc/resolv.conf"),
        format!("nameserver {}\n", resolver.addr.ip()),
    )
    .unwrap();
    // The admin kubeconfig with the API server as `localhost` (a name in its certificate), so the operator finds
    // it through /etc/hosts.
    let mut kubeconfig: Value =
        serde_yaml::from_str(&std::fs::read_to_string(cp.kubeconfig()).unwrap()).unwrap();
    let port = cp.server().rsplit(':').next().unwrap().to_owned();
    kubeconfig["clusters"][0]["cluster"]["server"] = json!(format!("https://localhost:{port}"));
    std::fs::create_dir_all(root.join("var/run/kube")).unwrap();
    std::fs::write(
        root.join("var/run/kube/config"),
        serde_yaml::to_string(&kubeconfig).unwrap(),
    )
    .unwrap();
    std::fs::create_dir_all(root.join("etc/litellm-operator")).unwrap();
    std::fs::write(
        root.join("etc/litellm-operator/tenancy.yaml"),
        format!(
            "tenants:\n  - name: platform\n    namespaces: [{ns}]\n    projects: [{}]\n    \
             externalSecrets: [tavily-api-key]\n",
            fixtures::PROJECT
        ),
    )
    .unwrap();

    let metrics = free_port();
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("operator.log");
    let out = std::fs::File::create(&log).unwrap();
    let endpoint = format!("http://{EMULATOR_HOST}:{}", emulator.addr().port());
    let mut operator = tokio::process::Command::from(entrypoint(
        image,
        root,
        &[
            "run",
            &format!("--namespace={ns}"),
            "--log-format=json",
            &format!("--metrics-addr=127.0.0.1:{metrics}"),
            "--tenancy-policy=/etc/litellm-operator/tenancy.yaml",
            "--leader-elect",
            &format!("--gcp-endpoint={endpoint}"),
        ],
    ));
    let mut operator = operator
        .env("KUBECONFIG", "/var/run/kube/config")
        .env("POD_NAMESPACE", &ns)
        .env("POD_NAME", "litellm-operator-image-0")
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = operator.id().unwrap();
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();

    let deployments: Api<LiteLLMDeployment> = Api::namespaced(client.clone(), &ns);
    deployments
        .patch(
            "litellm-proxy",
            &PatchParams::apply(FIELD_MANAGER),
            &Patch::Apply(fixtures::runbook("litellm-proxy")),
        )
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(exit) = operator.try_wait().unwrap() {
            panic!("the operator exited ({exit}):\n{}", log_text());
        }
        let status = deployments.get_status("litellm-proxy").await.unwrap().status;
        match status {
            Some(status) if is_ready(&status) => break status,
            _ if tokio::time::Instant::now() > deadline => {
                panic!(
                    "not Ready after 120 s: {status:?}\nthe operator said:\n{}",
                    log_text()
                )
            }
            _ => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    };
    assert_eq!(status.secrets.len(), 11, "{status:?}");
    assert!(
        status.secrets.iter().all(|s| s.version.is_some()),
        "every secret pinned to a version: {status:?}"
    );
    assert_eq!(pinned(&status, "TAVILY_API_KEY"), "1");

    // It ran as the image's user, resolved the emulator through DNS (the lookup a static glibc binary does
    // without any shared library), and served its probes.
    let process = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid = process.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert_eq!(
        uid.split_whitespace().collect::<Vec<_>>(),
        ["Uid:", "65532", "65532", "65532", "65532"]
    );
    let asked = resolver.asked();
    assert!(
        asked
            .iter()
            .any(|(name, kind)| name == EMULATOR_HOST && *kind == DNS_A),
        "the operator did not ask DNS for {EMULATOR_HOST}: {asked:?}"
    );
    let healthz = reqwest::get(format!("http://127.0.0.1:{metrics}/healthz"))
        .await
        .unwrap();
    assert!(healthz.status().is_success(), "{healthz:?}");
    // No credential reached its log.
    let logged = log_text();
    assert!(
        !logged.contains("-v4lu3"),
        "a secret value is in the operator's log:\n{logged}"
    );
    let _ = operator.start_kill();
}

// ---------------------------------------------------------------------------------------------
// The Dockerfile

#[test]
fn the_dockerfile_builds_the_same_layout_and_config() {
    let image = image();
    let run = &image.config["config"];
    let dockerfile = read_repo_file("Dockerfile").unwrap();
    let stages = stages(&dockerfile);
    let (last_from, last) = stages.last().unwrap();
    assert_eq!(
        last_from, "scratch",
        "the final stage starts empty, as image/build.sh does"
    );

    // Both lay the filesystem out with image/rootfs.sh, from a binary built with the same Rust flags and the build
    // machine's CA certificates, and add nothing else.
    let (_, build) = stages
        .iter()
        .find(|(from, _)| from.ends_with(" AS build"))
        .expect("a build stage");
    let build_run: String = build
        .iter()
        .filter(|(keyword, _)| keyword == "RUN")
        .map(|(_, args)| args.as_str())
        .collect();
    let script = read_repo_file("image/build.sh").unwrap();
    let rustflags = script
        .lines()
        .find_map(|l| l.strip_prefix("static_rustflags='"))
        .and_then(|l| l.strip_suffix('\''))
        .expect("image/build.sh sets static_rustflags");
    for needed in [
        &format!("RUSTFLAGS='{rustflags}'"),
        "--target",
        "bash image/rootfs.sh",
        "/etc/ssl/certs/ca-certificates.crt /out/rootfs",
    ] {
        assert!(
            build_run.contains(needed),
            "the build stage lacks {needed:?}: {build_run}"
        );
    }
    assert!(
        script.contains("bash \"$here/rootfs.sh\""),
        "image/build.sh does not run rootfs.sh"
    );
    let copies: Vec<&str> = last
        .iter()
        .filter(|(keyword, _)| keyword == "COPY" || keyword == "ADD" || keyword == "RUN")
        .map(|(_, args)| args.as_str())
        .collect();
    assert_eq!(copies, ["--from=build /out/rootfs/ /"]);

    let one = |keyword: &str| -> &str {
        let found: Vec<&str> = last
            .iter()
            .filter(|(k, _)| k == keyword)
            .map(|(_, args)| args.as_str())
            .collect();
        assert_eq!(found.len(), 1, "{keyword} in the final stage: {found:?}");
        found[0]
    };
    assert_eq!(one("USER"), run["User"], "the Dockerfile's USER, the image's");
    assert_eq!(
        serde_json::from_str::<Value>(one("ENTRYPOINT")).unwrap(),
        run["Entrypoint"],
        "the Dockerfile's ENTRYPOINT, the image's"
    );
    assert_eq!(
        serde_json::from_str::<Value>(one("CMD")).unwrap(),
        run["Cmd"],
        "the Dockerfile's CMD, the image's"
    );
    let exposed: BTreeMap<String, Value> = one("EXPOSE")
        .split_whitespace()
        .map(|port| {
            let port = if port.contains('/') {
                port.to_owned()
            } else {
                format!("{port}/tcp")
            };
            (port, json!({}))
        })
        .collect();
    assert_eq!(
        json!(exposed),
        run["ExposedPorts"],
        "the Dockerfile's EXPOSE, the image's"
    );
    let env: Vec<String> = assignments(one("ENV"))
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    assert_eq!(json!(env), run["Env"], "the Dockerfile's ENV, the image's");

    // Labels: the same keys and values; the version from the ARG's default, which is the workspace's version,
    // and the revision from a build argument.
    let args: BTreeMap<String, String> = last
        .iter()
        .filter(|(k, _)| k == "ARG")
        .flat_map(|(_, args)| assignments(args))
        .collect();
    assert_eq!(
        args.get("VERSION").map(String::as_str),
        Some(env!("CARGO_PKG_VERSION")),
        "ARG VERSION's default is the workspace version"
    );
    let mut labels: BTreeMap<String, String> = assignments(one("LABEL"))
        .into_iter()
        .map(|(k, v)| (k, v.replace("${VERSION}", &args["VERSION"])))
        .collect();
    assert_eq!(
        labels.remove("org.opencontainers.image.revision").as_deref(),
        Some("${REVISION}")
    );
    let mut built: BTreeMap<String, String> = serde_json::from_value(run["Labels"].clone()).unwrap();
    built.remove("org.opencontainers.image.revision");
    assert_eq!(labels, built, "the Dockerfile's LABELs, the image's");
    // No instruction changes the config in a way image/build.sh does not (WORKDIR, VOLUME, HEALTHCHECK, ...).
    for (keyword, args) in last {
        assert!(
            [
                "COPY",
                "ARG",
                "LABEL",
                "ENV",
                "USER",
                "EXPOSE",
                "ENTRYPOINT",
                "CMD"
            ]
            .contains(&keyword.as_str()),
            "the final stage has `{keyword} {args}`, which image/build.sh does not do"
        );
    }
}

#[test]
fn the_dockerfile_parser_reads_continuations_quotes_and_stages() {
    let text = "# c\nARG A=1\nFROM x AS build\nRUN a \\\n    && b\n\nFROM scratch\n\
                LABEL a=\"b c\" \\\n      d=\"${V}\"\nENV P=/bin Q=1\n";
    let stages = stages(text);
    assert_eq!(stages.len(), 2);
    assert_eq!(stages[0].0, "x AS build");
    assert_eq!(stages[0].1, [("RUN".to_owned(), "a && b".to_owned())]);
    assert_eq!(stages[1].0, "scratch");
    assert_eq!(
        assignments(&stages[1].1[0].1),
        [
            ("a".to_owned(), "b c".to_owned()),
            ("d".to_owned(), "${V}".to_owned())
        ]
    );
    assert_eq!(
        assignments(&stages[1].1[1].1),
        [
            ("P".to_owned(), "/bin".to_owned()),
            ("Q".to_owned(), "1".to_owned())
        ]
    );
}

#[tokio::test]
async fn the_test_resolver_answers_its_name_and_nothing_else() {
    let resolver = Resolver::start("a.image.test", Ipv4Addr::new(127, 0, 0, 9)).await;
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let query = |id: u8, name: &str, kind: u16| {
        let mut q = vec![0, id, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in name.split('.') {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&kind.to_be_bytes());
        q.extend_from_slice(&[0, 1]);
        q
    };
    let mut buf = [0u8; 512];
    socket
        .send_to(&query(1, "a.image.test", DNS_A), resolver.addr)
        .await
        .unwrap();
    let n = socket.recv(&mut buf).await.unwrap();
    assert_eq!(buf[1], 1, "the id");
    assert_eq!(buf[3] & 0x0f, 0, "NOERROR");
    assert_eq!(&buf[6..8], [0, 1], "one answer");
    assert_eq!(&buf[n - 4..n], [127, 0, 0, 9]);
    socket
        .send_to(&query(2, "b.image.test", DNS_A), resolver.addr)
        .await
        .unwrap();
    socket.recv(&mut buf).await.unwrap();
    assert_eq!(buf[3] & 0x0f, 3, "NXDOMAIN");
    socket
        .send_to(&query(3, "a.image.test", 28), resolver.addr)
        .await
        .unwrap();
    socket.recv(&mut buf).await.unwrap();
    assert_eq!((buf[3] & 0x0f, &buf[6..8]), (0, &[0u8, 0][..]), "AAAA: no data");
    assert_eq!(
        resolver.asked(),
        [
            ("a.image.test".to_owned(), DNS_A),
            ("b.image.test".to_owned(), DNS_A),
            ("a.image.test".to_owned(), 28)
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Building, reading and unpacking the image

/// What `image/build.sh` built, and the image's manifest and config read from the OCI layout.
struct Image {
    crane: PathBuf,
    binary: PathBuf,
    tarball: PathBuf,
    manifest: Value,
    config: Value,
    config_bytes: Vec<u8>,
}

/// Runs `image/build.sh` once per test binary: the first time it compiles the release binary (minutes), later it
/// finds cargo's output current and only reassembles the image.
fn image() -> &'static Image {
    static IMAGE: OnceLock<Image> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let out = Command::new("bash")
            .arg(repo_path("image/build.sh"))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "image/build.sh failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8(out.stdout).unwrap();
        let built: BTreeMap<&str, PathBuf> = stdout
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k, PathBuf::from(v)))
            .collect();
        let oci = &built["oci"];
        let index: Value = serde_json::from_slice(&std::fs::read(oci.join("index.json")).unwrap()).unwrap();
        let manifests = index["manifests"].as_array().unwrap();
        assert_eq!(manifests.len(), 1, "one image in the layout: {index}");
        let manifest: Value = serde_json::from_slice(&blob(oci, &manifests[0]["digest"])).unwrap();
        let config_bytes = blob(oci, &manifest["config"]["digest"]);
        Image {
            crane: built["crane"].clone(),
            binary: built["binary"].clone(),
            tarball: built["tarball"].clone(),
            config: serde_json::from_slice(&config_bytes).unwrap(),
            manifest,
            config_bytes,
        }
    })
}

/// A blob of an OCI layout by its digest (`sha256:...`).
fn blob(layout: &Path, digest: &Value) -> Vec<u8> {
    let digest = digest.as_str().unwrap();
    let hex = digest.strip_prefix("sha256:").unwrap();
    std::fs::read(layout.join("blobs/sha256").join(hex)).unwrap()
}

/// One member of a tar file.
fn tar_member(tar: &Path, member: &str) -> Vec<u8> {
    let out = Command::new("tar")
        .arg("-xOf")
        .arg(tar)
        .arg(member)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// The image's filesystem, flattened by `crane export` from the tarball and unpacked (owners and modes kept, as
/// a container runtime does) into a new directory, which stands for its `/`.
fn unpack(image: &Image) -> tempfile::TempDir {
    let root = tempfile::Builder::new()
        .prefix("litellm-image-")
        .tempdir()
        .unwrap();
    let flat = tempfile::NamedTempFile::new().unwrap();
    let out = Command::new(&image.crane)
        .args(["export", "-"])
        .arg(flat.path())
        .stdin(std::fs::File::open(&image.tarball).unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "crane export: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new("tar")
        .args([
            "--extract",
            "--same-permissions",
            "--same-owner",
            "--numeric-owner",
            "--file",
        ])
        .arg(flat.path())
        .arg("--directory")
        .arg(root.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tar: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // `/` of a container: root's, searchable by everyone (a new temporary directory is private).
    std::fs::set_permissions(root.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    root
}

/// Every entry under `dir` as `(/path, type, mode, uid, gid)`, sorted by path.
fn walk(root: &Path, dir: &Path, found: &mut Vec<(String, char, u32, u32, u32)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let kind = if meta.is_dir() {
            'd'
        } else if meta.is_file() {
            'f'
        } else {
            'l'
        };
        let name = format!("/{}", path.strip_prefix(root).unwrap().display());
        found.push((name, kind, meta.mode() & 0o7777, meta.uid(), meta.gid()));
        if meta.is_dir() {
            walk(root, &path, found);
        }
    }
}

/// The image's entrypoint with `args` (replacing its cmd, as a pod's `args` do) in a chroot at `root`, as the
/// image's user, with only the image's environment.
fn entrypoint(image: &Image, root: &Path, args: &[&str]) -> Command {
    let run = &image.config["config"];
    let entrypoint: Vec<&str> = run["Entrypoint"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let mut command = Command::new("chroot");
    command
        .arg(format!("--userspec={}", run["User"].as_str().unwrap()))
        .arg(root)
        .args(&entrypoint)
        .args(args)
        .env_clear();
    for pair in run["Env"].as_array().into_iter().flatten() {
        let (name, value) = pair.as_str().unwrap().split_once('=').unwrap();
        command.env(name, value);
    }
    command
}

fn require_root() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap_or_default();
    assert!(
        uid.split_whitespace().nth(1) == Some("0"),
        "this test runs the image in a chroot, which needs root (as in CI); run it as root"
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn git_head() -> Option<String> {
    let out = Command::new("git")
        .args(["-C", &repo_path("").display().to_string(), "rev-parse", "HEAD"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The chart's `image.repository`.
fn chart_image_repository() -> String {
    let values = read_repo_file("charts/litellm-operator/values.yaml").unwrap();
    let image: Value = serde_yaml::from_str::<Value>(&values).unwrap()["image"].clone();
    image["repository"].as_str().unwrap().to_owned()
}

/// `KEY` of `[workspace.package]` in the workspace Cargo.toml.
fn workspace_package(key: &str) -> String {
    let manifest = read_repo_file("Cargo.toml").unwrap();
    let section = manifest.split("[workspace.package]").nth(1).unwrap();
    section
        .lines()
        .take_while(|l| !l.starts_with('['))
        .find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == key).then(|| v.trim().trim_matches('"').to_owned())
        })
        .unwrap()
}

const PT_INTERP: u32 = 3;

/// The `p_type` of every program header of a little-endian ELF64 file.
fn program_header_types(elf: &[u8]) -> Vec<u32> {
    assert_eq!(&elf[..4], b"\x7fELF");
    assert_eq!((elf[4], elf[5]), (2, 1), "ELF64, little endian");
    let u16_at = |at: usize| usize::from(u16::from_le_bytes([elf[at], elf[at + 1]]));
    let phoff = usize::try_from(u64::from_le_bytes(elf[0x20..0x28].try_into().unwrap())).unwrap();
    let (entry_size, count) = (u16_at(0x36), u16_at(0x38));
    (0..count)
        .map(|i| {
            let at = phoff + i * entry_size;
            u32::from_le_bytes(elf[at..at + 4].try_into().unwrap())
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Reading the Dockerfile

/// The stages of a Dockerfile: the `FROM` arguments, and the other instructions as `(KEYWORD, arguments)`, with
/// comments dropped and continuation lines joined.
fn stages(text: &str) -> Vec<(String, Vec<(String, String)>)> {
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part.trim());
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                instructions.push(std::mem::take(&mut current).trim().to_owned());
            }
        }
    }
    let mut stages: Vec<(String, Vec<(String, String)>)> = Vec::new();
    for instruction in instructions.into_iter().filter(|i| !i.is_empty()) {
        let (keyword, args) = instruction.split_once(' ').unwrap_or((&instruction, ""));
        let (keyword, args) = (keyword.to_uppercase(), args.trim().to_owned());
        if keyword == "FROM" {
            stages.push((args, Vec::new()));
        } else if let Some((_, stage)) = stages.last_mut() {
            stage.push((keyword, args));
        }
    }
    stages
}

/// `KEY=VALUE` pairs separated by blanks; a value may be double-quoted (no escapes).
fn assignments(text: &str) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let (key, after) = rest
            .split_once('=')
            .unwrap_or_else(|| panic!("not KEY=VALUE: {rest}"));
        let (value, after) = match after.strip_prefix('"') {
            Some(quoted) => {
                let end = quoted
                    .find('"')
                    .unwrap_or_else(|| panic!("unclosed quote: {after}"));
                (&quoted[..end], &quoted[end + 1..])
            }
            None => after.split_once(char::is_whitespace).unwrap_or((after, "")),
        };
        pairs.push((key.trim().to_owned(), value.to_owned()));
        rest = after.trim_start();
    }
    pairs
}

// ---------------------------------------------------------------------------------------------
// A DNS resolver standing for the cluster's

const DNS_A: u16 = 1;

/// Answers A queries for one name over UDP on port 53 of a loopback address of its own (resolv.conf has no port),
/// NXDOMAIN for every other name, and remembers what it was asked.
struct Resolver {
    addr: SocketAddr,
    asked: Arc<Mutex<Vec<(String, u16)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Resolver {
    async fn start(name: &str, answer: Ipv4Addr) -> Resolver {
        // A random 127.x.y.z, so parallel test runs on one machine do not collide on port 53.
        let mut socket = None;
        for _ in 0..20 {
            let [_, x, y, z] = rand::random::<[u8; 4]>();
            let ip = Ipv4Addr::new(127, x.max(1), y, z.max(2));
            if let Ok(s) = tokio::net::UdpSocket::bind((ip, 53)).await {
                socket = Some(s);
                break;
            }
        }
        let socket = socket.expect("a free port 53 on some loopback address (needs root)");
        let addr = socket.local_addr().unwrap();
        let asked: Arc<Mutex<Vec<(String, u16)>>> = Arc::default();
        let seen = asked.clone();
        let name = name.to_ascii_lowercase();
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 512];
            while let Ok((n, peer)) = socket.recv_from(&mut buf).await {
                let query = &buf[..n];
                let Some((qname, kind, end)) = question(query) else {
                    continue;
                };
                seen.lock().unwrap().push((qname.clone(), kind));
                let known = qname == name;
                let answers = u16::from(known && kind == DNS_A);
                let mut reply = Vec::with_capacity(end + 16);
                reply.extend_from_slice(&query[..2]);
                reply.push(0x84 | (query[2] & 0x01)); // response, authoritative, recursion desired as asked
                reply.push(if known { 0x80 } else { 0x83 }); // recursion available; NOERROR or NXDOMAIN
                reply.extend_from_slice(&[0, 1]);
                reply.extend_from_slice(&answers.to_be_bytes());
                reply.extend_from_slice(&[0, 0, 0, 0]);
                reply.extend_from_slice(&query[12..end]);
                if answers == 1 {
                    reply.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4]);
                    reply.extend_from_slice(&answer.octets());
                }
                let _ = socket.send_to(&reply, peer).await;
            }
        });
        Resolver { addr, asked, task }
    }

    fn asked(&self) -> Vec<(String, u16)> {
        self.asked.lock().unwrap().clone()
    }
}

impl Drop for Resolver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The one question of a DNS query: name (lower case, no trailing dot), type, and where the question ends.
fn question(query: &[u8]) -> Option<(String, u16, usize)> {
    if query.len() < 12 || query[4..6] != [0, 1] {
        return None;
    }
    let mut labels = Vec::new();
    let mut at = 12;
    loop {
        let len = usize::from(*query.get(at)?);
        at += 1;
        if len == 0 {
            break;
        }
        if len > 63 {
            return None;
        }
        labels.push(String::from_utf8_lossy(query.get(at..at + len)?).to_ascii_lowercase());
        at += len;
    }
    let kind = u16::from_be_bytes([*query.get(at)?, *query.get(at + 1)?]);
    query.get(at + 3)?;
    Some((labels.join("."), kind, at + 4))
}
