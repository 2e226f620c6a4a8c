//! Tests of the flags and their validation into configs.

use clap::Parser;
use fanfold_common::operation::{Options, SpecError};

use super::*;

#[derive(Parser)]
struct Coordinator {
    #[command(flatten)]
    flags: CoordinatorFlags,
}

#[derive(Parser)]
struct Worker {
    #[command(flatten)]
    flags: WorkerFlags,
}

/// Whether `registry` lets a streaming job (a program) run.
fn runs_programs(registry: &Registry) -> bool {
    let options: Options = [("mapper".to_owned(), "cat".to_owned())].into();
    match registry.build("streaming", &options) {
        Ok(_) => true,
        Err(SpecError::ProgramsNotAllowed(_)) => false,
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn only_loopback_is_served_without_insecure() {
    let safe = Coordinator::try_parse_from(["coordinator"]).unwrap().flags;
    let addr = |text: &str| text.parse::<std::net::SocketAddr>().unwrap();
    assert_eq!(
        safe.exposure(addr("127.0.0.1:7077")).unwrap(),
        Exposure::Loopback
    );
    assert_eq!(
        safe.exposure(addr("[::1]:7077")).unwrap(),
        Exposure::Loopback
    );
    for open in ["0.0.0.0:7077", "[::]:7077", "10.1.2.3:7077"] {
        let refused = safe.exposure(addr(open)).unwrap_err().to_string();
        assert!(
            refused.starts_with(&format!("refusing to listen on {open}"))
                && refused.contains("--insecure"),
            "{refused}"
        );
    }
    let open = Coordinator::try_parse_from(["coordinator", "--insecure"])
        .unwrap()
        .flags;
    assert_eq!(
        open.exposure(addr("0.0.0.0:7077")).unwrap(),
        Exposure::Insecure
    );
}

#[test]
fn coordinator_defaults_are_the_documented_ones() {
    let flags = Coordinator::try_parse_from(["coordinator"]).unwrap().flags;
    assert_eq!(flags.listen, "127.0.0.1:7077");
    assert!(!flags.insecure);
    assert_eq!(flags.http_address(), Some("127.0.0.1:8080"));
    assert_eq!(flags.http_advertise, None);
    assert!(!flags.log_json);
    let config = flags.config(Registry::builtin()).unwrap();
    assert_eq!(config.default_chunk_size, 16 << 20);
    assert_eq!(config.scheduling.prefetch, 1);
    assert_eq!(config.scheduling.max_attempts, 4);
    assert_eq!(config.scheduling.worker_timeout, Duration::from_secs(10));
    let backups = config.scheduling.backups.expect("backups on by default");
    assert_eq!(
        (backups.min_age, backups.slowdown),
        (Duration::from_secs(10), 4)
    );
    assert_eq!(config.state_dir, None);
    assert!(!runs_programs(&config.registry));
}

#[test]
fn coordinator_flags_reach_its_config() {
    let flags = Coordinator::try_parse_from([
        "coordinator",
        "--listen",
        "127.0.0.1:0",
        "--chunk-size",
        "8MiB",
        "--prefetch",
        "3",
        "--max-attempts",
        "2",
        "--worker-timeout",
        "1500ms",
        "--state-dir",
        "/var/lib/fanfold",
        "--no-backups",
        "--allow-streaming",
        "--log-json",
        "--http-listen",
        "off",
        "--http-advertise",
        "http://coord.example:8080",
    ])
    .unwrap()
    .flags;
    assert_eq!(flags.listen, "127.0.0.1:0");
    assert_eq!(flags.http_address(), None);
    assert!(flags.log_json);
    let config = flags.config(Registry::builtin()).unwrap();
    assert_eq!(config.default_chunk_size, 8 << 20);
    assert_eq!(config.scheduling.prefetch, 3);
    assert_eq!(config.scheduling.max_attempts, 2);
    assert_eq!(
        config.scheduling.worker_timeout,
        Duration::from_millis(1500)
    );
    assert!(config.scheduling.backups.is_none());
    assert_eq!(config.state_dir, Some(PathBuf::from("/var/lib/fanfold")));
    assert!(runs_programs(&config.registry));
    assert_eq!(
        config.http_advertise.as_deref(),
        Some("http://coord.example:8080")
    );

    let later = Coordinator::try_parse_from(["coordinator", "--backup-after", "1m"])
        .unwrap()
        .flags;
    let backups = later
        .config(Registry::builtin())
        .unwrap()
        .scheduling
        .backups
        .unwrap();
    assert_eq!(backups.min_age, Duration::from_secs(60));
}

#[test]
fn a_chunk_size_out_of_range_is_refused_naming_the_flag() {
    let flags = Coordinator::try_parse_from(["coordinator", "--chunk-size", "10"])
        .unwrap()
        .flags;
    let error = flags.config(Registry::builtin()).unwrap_err();
    assert_eq!(
        error.to_string(),
        "--chunk-size: chunk size 10 is outside 1024..=268435456 bytes"
    );
    assert!(Coordinator::try_parse_from(["coordinator", "--max-attempts", "0"]).is_err());
}

#[test]
fn worker_flags_reach_its_config_and_defaults_fill_the_rest() {
    let flags = Worker::try_parse_from([
        "worker",
        "--coordinator",
        "coord:7077",
        "--slots",
        "3",
        "--name",
        "w1",
        "--heartbeat",
        "500ms",
        "--drain-timeout",
        "5s",
        "--shared-storage",
        "--allow-streaming",
        "--shuffle-listen",
        "127.0.0.1:7078",
        "--shuffle-advertise",
        "w1.local:7078",
        "--spill-dir",
        "/var/spill",
    ])
    .unwrap()
    .flags;
    let config = flags.config(Registry::builtin()).unwrap();
    assert_eq!(config.shuffle_listen.to_string(), "127.0.0.1:7078");
    assert_eq!(config.shuffle_advertise.as_deref(), Some("w1.local:7078"));
    assert_eq!(config.spill_dir, PathBuf::from("/var/spill"));
    assert_eq!(config.coordinator, "http://coord:7077");
    assert_eq!((config.name.as_str(), config.slots), ("w1", 3));
    assert_eq!(config.heartbeat, Duration::from_millis(500));
    assert_eq!(config.drain_timeout, Duration::from_secs(5));
    assert!(config.shared_storage);
    assert!(runs_programs(&config.registry));

    let flags = Worker::try_parse_from(["worker"]).unwrap().flags;
    let config = flags.config(Registry::builtin()).unwrap();
    assert!(config.shuffle_listen.ip().is_loopback());
    assert_eq!(config.spill_dir, std::env::temp_dir());
    assert_eq!(config.coordinator, "http://127.0.0.1:7077");
    let cores = std::thread::available_parallelism().unwrap().get() as u32;
    assert_eq!(config.slots, cores);
    assert!(
        config.name.ends_with(&format!("-{}", std::process::id())),
        "{}",
        config.name
    );
    assert_eq!(config.heartbeat, Duration::from_secs(2));
    assert_eq!(config.drain_timeout, Duration::from_secs(30));
    assert!(!config.shared_storage);
    assert!(!runs_programs(&config.registry));
    assert!(Worker::try_parse_from(["worker", "--slots", "0"]).is_err());
    let open = ["worker", "--shuffle-listen", "0.0.0.0:7078"];
    let refused = Worker::try_parse_from(open).unwrap().flags;
    let error = refused.config(Registry::builtin()).unwrap_err().to_string();
    assert!(
        error.contains("0.0.0.0:7078") && error.contains("--insecure"),
        "{error}"
    );
    let allowed = Worker::try_parse_from([&open[..], &["--insecure"]].concat()).unwrap();
    assert!(allowed.flags.config(Registry::builtin()).is_ok());

    let metrics = ["worker", "--metrics-listen", "0.0.0.0:9090"];
    let refused = Worker::try_parse_from(metrics).unwrap().flags;
    let error = refused.config(Registry::builtin()).unwrap_err().to_string();
    assert!(
        error.contains("metrics on 0.0.0.0:9090") && error.contains("--insecure"),
        "{error}"
    );
    let allowed = Worker::try_parse_from([&metrics[..], &["--insecure"]].concat()).unwrap();
    let config = allowed.flags.config(Registry::builtin()).unwrap();
    assert_eq!(config.metrics_listen, Some("0.0.0.0:9090".parse().unwrap()));
}

#[test]
fn tokens_roots_limits_and_retention_reach_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().display().to_string();
    let (_, line) =
        fanfold_coordinator::auth::new_token("w", fanfold_coordinator::auth::Role::Worker, false)
            .unwrap();
    let flags = Coordinator::try_parse_from([
        "coordinator",
        "--auth-token-lines",
        &line,
        "--data-root",
        &root,
        "--output-root",
        &root,
        "--max-inputs",
        "7",
        "--max-active-jobs",
        "5",
        "--max-active-jobs-per-principal",
        "2",
        "--keep-results",
        "forever",
        "--keep-jobs",
        "9",
    ])
    .unwrap()
    .flags;
    let addr: std::net::SocketAddr = "0.0.0.0:7077".parse().unwrap();
    assert_eq!(flags.exposure(addr).unwrap(), Exposure::Authenticated);
    let config = flags.config(Registry::builtin()).unwrap();
    assert!(config.access.required());
    assert_eq!(
        config.data_roots.paths(),
        [dir.path().canonicalize().unwrap()]
    );
    assert!(!config.output_roots.is_empty());
    assert_eq!(config.max_inputs, 7);
    assert_eq!(
        (
            config.limits.active_jobs,
            config.limits.active_jobs_per_principal
        ),
        (5, 2)
    );
    assert_eq!(
        (config.retention.keep_for, config.retention.keep_jobs),
        (None, Some(9))
    );

    let defaults = Coordinator::try_parse_from(["coordinator"]).unwrap().flags;
    let config = defaults.config(Registry::builtin()).unwrap();
    assert!(!config.access.required() && config.data_roots.is_empty());
    assert_eq!(config.retention.keep_for, Some(Duration::from_secs(86_400)));
    assert_eq!(config.retention.keep_jobs, Some(1000));
    assert_eq!(config.limits.active_jobs, 1000);

    let missing = Coordinator::try_parse_from(["coordinator", "--data-root", "/no/such/dir"])
        .unwrap()
        .flags;
    let error = missing.config(Registry::builtin()).unwrap_err().to_string();
    assert!(error.starts_with("--data-root /no/such/dir"), "{error}");
}
