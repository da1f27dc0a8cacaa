//! Clients for the cluster kubectl's connection flags name (`--kubeconfig --context --cluster
//! --user --as --as-group --as-uid --request-timeout -n`), with kubectl's meaning.

use super::transport::Transport;
use super::KubeError;
use http_body_util::BodyExt;
use kube::client::{ClientBuilder, DynBody};
use kube::config::{KubeConfigOptions, Kubeconfig, KubeconfigError};
use kube::{Client, Config};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tower::BoxError;

/// Connecting (TCP and TLS) gives up after this long, or sooner with `--request-timeout`:
/// kubectl's dialer waits 30 s.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a single request may wait for the server when `--request-timeout` is not given.
/// The API server ends a non-watch request itself after 60 s (its `--request-timeout`), so a
/// healthy server is never cut short, and a silent one no longer hangs the command.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Which cluster, as whom, and how patiently: what kubectl's connection flags say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Connection {
    /// `--kubeconfig` (or `KUBECONFIG`): one file, or several joined as a path list.
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
    pub cluster: Option<String>,
    pub user: Option<String>,
    /// `-n`: the namespace commands default to, over the context's.
    pub namespace: Option<String>,
    /// `--as`, `--as-group`, `--as-uid`: whom to impersonate.
    pub as_user: Option<String>,
    pub as_group: Vec<String>,
    pub as_uid: Option<String>,
    /// `--request-timeout`: a single request's bound (0: none of its own).
    pub request_timeout: Option<Duration>,
}

/// A request client and a stream client for the same cluster and identity.
///
/// kubectl applies `--request-timeout` to single requests only; watches and log follows may be
/// quiet for minutes. The `streams` client therefore has no read timeout (connecting is bounded
/// the same for both).
#[derive(Clone)]
pub struct Clients {
    /// For get/list/create/delete: bounded by `--request-timeout` (or 60 s).
    pub requests: Client,
    /// For watches and `logs --follow`: no read timeout.
    pub streams: Client,
    /// `-n`, else the context's namespace, else `default`.
    pub namespace: String,
}

/// The request client and the namespace commands default to.
pub async fn client(args: &Connection) -> Result<(Client, String), KubeError> {
    let clients = clients(args).await?;
    Ok((clients.requests, clients.namespace))
}

/// Both clients, sharing one loaded configuration.
pub async fn clients(args: &Connection) -> Result<Clients, KubeError> {
    let mut config = load_config(args).await?;
    apply_identity(&mut config, args);
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let bounds = Bounds::from_flag(args.request_timeout);
    Ok(Clients {
        requests: build(bounds.requests(config.clone()))?,
        streams: build(bounds.streams(config))?,
        namespace,
    })
}

/// The time bounds of the two clients, from `--request-timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Bounds {
    connect: Duration,
    request: Duration,
}

impl Bounds {
    /// kubectl's `--request-timeout=0` means no timeout of its own; connecting stays bounded.
    fn from_flag(flag: Option<Duration>) -> Self {
        match flag.filter(|timeout| !timeout.is_zero()) {
            Some(timeout) => Bounds {
                connect: timeout.min(CONNECT_TIMEOUT),
                request: timeout,
            },
            None => Bounds {
                connect: CONNECT_TIMEOUT,
                request: DEFAULT_REQUEST_TIMEOUT,
            },
        }
    }

    fn requests(self, mut config: Config) -> Config {
        config.connect_timeout = Some(self.connect);
        config.read_timeout = Some(self.request);
        // Count from the request, not from when a pooled connection went idle.
        config.reset_reader_on_write = true;
        config
    }

    fn streams(self, mut config: Config) -> Config {
        config.connect_timeout = Some(self.connect);
        config.read_timeout = None;
        config
    }
}

/// A client whose transport failures (connect, TLS, read, timeouts) carry the server's URL and
/// the bounds in force, so every message can say which server did not answer.
fn build(config: Config) -> Result<Client, KubeError> {
    let transport = Arc::new(Transport::template(
        config.cluster_url.to_string().trim_end_matches('/'),
        config.connect_timeout,
        config.read_timeout,
    ));
    let on_error = {
        let transport = Arc::clone(&transport);
        move |err: BoxError| transport.tag(err)
    };
    let on_body_error = move |err: BoxError| transport.tag(err);
    let tagging = tower::ServiceBuilder::new()
        .map_err(on_error)
        .map_response(move |response: http::Response<Box<DynBody>>| {
            let on_body_error = on_body_error.clone();
            response.map(|body| Box::new(body.map_err(on_body_error)) as Box<DynBody>)
        })
        .into_inner();
    Ok(ClientBuilder::try_from(config)
        .map_err(|err| KubeError::Config(format!("building the client: {err}")))?
        .with_layer(&tagging)
        .build())
}

/// A kubeconfig flag means that kubeconfig, exactly; only with none do we read the default
/// file, or, without one, the in-cluster service account (as kubectl does).
async fn load_config(args: &Connection) -> Result<Config, KubeError> {
    let options = KubeConfigOptions {
        context: args.context.clone(),
        cluster: args.cluster.clone(),
        user: args.user.clone(),
    };
    let (kubeconfig, source) = match &args.kubeconfig {
        Some(paths) => (read_kubeconfig(paths)?, paths.display().to_string()),
        None => match Kubeconfig::read() {
            Ok(kubeconfig) => (kubeconfig, "~/.kube/config".to_string()),
            Err(KubeconfigError::ReadConfig(err, path))
                if err.kind() == std::io::ErrorKind::NotFound
                    && options.context.is_none()
                    && options.cluster.is_none()
                    && options.user.is_none() =>
            {
                return Config::incluster().map_err(|incluster| {
                    KubeError::Config(format!(
                        "{} does not exist, and this is not a pod in a cluster ({incluster})",
                        path.display()
                    ))
                });
            }
            Err(err) => return Err(KubeError::Config(err.to_string())),
        },
    };
    check_names(&kubeconfig, &options, &source)?;
    Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|err| KubeError::Config(format!("{source}: {err}")))
}

/// The context, cluster and user the flags (or current-context) pick must exist: a typo gets
/// the list of what does, as kubectl's own messages do.
fn check_names(
    kubeconfig: &Kubeconfig,
    options: &KubeConfigOptions,
    source: &str,
) -> Result<(), KubeError> {
    let names = |list: Vec<&str>| {
        if list.is_empty() {
            "it defines none".to_string()
        } else {
            format!("it defines {}", list.join(", "))
        }
    };
    let contexts = || {
        names(
            kubeconfig
                .contexts
                .iter()
                .map(|c| c.name.as_str())
                .collect(),
        )
    };
    let chosen = options
        .context
        .as_deref()
        .or(kubeconfig.current_context.as_deref())
        .filter(|name| !name.is_empty());
    let Some(chosen) = chosen else {
        return Err(KubeError::Config(format!(
            "{source} sets no current-context and --context was not given ({})",
            contexts()
        )));
    };
    let Some(context) = kubeconfig.contexts.iter().find(|c| c.name == chosen) else {
        return Err(KubeError::Config(format!(
            "no context {chosen:?} in {source} ({})",
            contexts()
        )));
    };
    let context = context.context.as_ref();
    let cluster = options
        .cluster
        .as_deref()
        .or(context.map(|c| c.cluster.as_str()))
        .unwrap_or_default();
    if !kubeconfig.clusters.iter().any(|c| c.name == cluster) {
        return Err(KubeError::Config(format!(
            "no cluster {cluster:?} in {source} (context {chosen:?} or --cluster names it; {})",
            names(
                kubeconfig
                    .clusters
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect()
            )
        )));
    }
    // As client-go: a context without a user is fine, a --user that does not exist is not.
    if let Some(user) = options.user.as_deref() {
        if !kubeconfig.auth_infos.iter().any(|u| u.name == user) {
            return Err(KubeError::Config(format!(
                "no user {user:?} in {source} ({})",
                names(
                    kubeconfig
                        .auth_infos
                        .iter()
                        .map(|u| u.name.as_str())
                        .collect()
                )
            )));
        }
    }
    Ok(())
}

/// The kubeconfig the flags name (`--kubeconfig`, else `KUBECONFIG`, else ~/.kube/config).
pub fn kubeconfig(args: &Connection) -> Result<Kubeconfig, KubeError> {
    match &args.kubeconfig {
        Some(path) => read_kubeconfig(path),
        None => Kubeconfig::read().map_err(|err| KubeError::Config(err.to_string())),
    }
}

/// `--kubeconfig` (or `KUBECONFIG`) may list several files, merged in order as kubectl does.
fn read_kubeconfig(paths: &Path) -> Result<Kubeconfig, KubeError> {
    let mut merged: Option<Kubeconfig> = None;
    for path in std::env::split_paths(paths.as_os_str()).filter(|p| !p.as_os_str().is_empty()) {
        let next = Kubeconfig::read_from(&path).map_err(|err| {
            let why = match err {
                KubeconfigError::ReadConfig(io, _) => format!("cannot read it: {io}"),
                KubeconfigError::Parse(parse) => format!("not a kubeconfig: {parse}"),
                other => other.to_string(),
            };
            KubeError::Config(format!("{}: {why}", path.display()))
        })?;
        merged = Some(match merged {
            None => next,
            Some(done) => done
                .merge(next)
                .map_err(|err| KubeError::Config(err.to_string()))?,
        });
    }
    merged.ok_or_else(|| KubeError::Config("--kubeconfig names no file".into()))
}

fn apply_identity(config: &mut Config, args: &Connection) {
    if let Some(user) = &args.as_user {
        config.auth_info.impersonate = Some(user.clone());
    }
    if !args.as_group.is_empty() {
        config.auth_info.impersonate_groups = Some(args.as_group.clone());
    }
    if let Some(uid) = &args.as_uid {
        config.auth_info.impersonate_uid = Some(uid.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const KUBECONFIG: &str = r#"
apiVersion: v1
kind: Config
current-context: one
clusters:
- name: c1
  cluster: {server: "http://127.0.0.1:1"}
- name: c2
  cluster: {server: "http://127.0.0.1:2"}
users:
- name: u1
  user: {token: one}
- name: u2
  user: {token: two}
contexts:
- name: one
  context: {cluster: c1, user: u1, namespace: ns-one}
- name: two
  context: {cluster: c2, user: u2}
"#;

    fn kubeconfig() -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(KUBECONFIG.as_bytes()).unwrap();
        file
    }

    fn args(file: &tempfile::NamedTempFile) -> Connection {
        Connection {
            kubeconfig: Some(file.path().to_path_buf()),
            ..Connection::default()
        }
    }

    #[tokio::test]
    async fn current_context_and_its_namespace() {
        let file = kubeconfig();
        let config = load_config(&args(&file)).await.unwrap();
        assert_eq!(config.cluster_url.port_u16(), Some(1));
        assert_eq!(config.default_namespace, "ns-one");
    }

    #[tokio::test]
    async fn context_cluster_and_user_flags_override() {
        let file = kubeconfig();
        let mut flags = args(&file);
        flags.context = Some("two".into());
        let config = load_config(&flags).await.unwrap();
        assert_eq!(config.cluster_url.port_u16(), Some(2));
        assert_eq!(config.default_namespace, "default");

        flags.cluster = Some("c1".into());
        flags.user = Some("u1".into());
        let config = load_config(&flags).await.unwrap();
        assert_eq!(config.cluster_url.port_u16(), Some(1));
    }

    #[tokio::test]
    async fn unknown_context_is_an_error_not_a_fallback() {
        let file = kubeconfig();
        let mut flags = args(&file);
        flags.context = Some("nope".into());
        assert!(matches!(
            load_config(&flags).await,
            Err(KubeError::Config(_))
        ));
    }

    #[tokio::test]
    async fn impersonation_namespace_and_timeouts() {
        let file = kubeconfig();
        let mut flags = args(&file);
        flags.as_user = Some("jane".into());
        flags.as_group = vec!["ops".into(), "dev".into()];
        flags.as_uid = Some("42".into());
        flags.namespace = Some("shop".into());
        let mut config = load_config(&flags).await.unwrap();
        apply_identity(&mut config, &flags);
        assert_eq!(config.auth_info.impersonate.as_deref(), Some("jane"));
        assert_eq!(
            config.auth_info.impersonate_groups,
            Some(vec!["ops".to_string(), "dev".to_string()])
        );
        assert_eq!(config.auth_info.impersonate_uid.as_deref(), Some("42"));
        let clients = clients(&flags).await.unwrap();
        assert_eq!(clients.namespace, "shop");
    }

    #[test]
    fn request_timeout_bounds_connecting_and_requests_but_not_streams() {
        let config = || Config::new("https://127.0.0.1:6443".parse().unwrap());
        let given = Bounds::from_flag(Some(Duration::from_secs(5)));
        let requests = given.requests(config());
        assert_eq!(requests.connect_timeout, Some(Duration::from_secs(5)));
        assert_eq!(requests.read_timeout, Some(Duration::from_secs(5)));
        assert!(requests.reset_reader_on_write);
        let streams = given.streams(config());
        assert_eq!(streams.connect_timeout, Some(Duration::from_secs(5)));
        assert_eq!(streams.read_timeout, None);
        // No flag, or kubectl's 0 (no timeout): kubectl's bounds, never none.
        for flag in [None, Some(Duration::ZERO)] {
            let bounds = Bounds::from_flag(flag);
            assert_eq!(
                bounds.requests(config()).connect_timeout,
                Some(CONNECT_TIMEOUT)
            );
            assert_eq!(
                bounds.requests(config()).read_timeout,
                Some(DEFAULT_REQUEST_TIMEOUT)
            );
            assert_eq!(bounds.streams(config()).read_timeout, None);
        }
        // A long request timeout does not make connecting wait longer than kubectl's dialer.
        let long = Bounds::from_flag(Some(Duration::from_secs(600)));
        assert_eq!(
            long.requests(config()).connect_timeout,
            Some(CONNECT_TIMEOUT)
        );
        assert_eq!(
            long.requests(config()).read_timeout,
            Some(Duration::from_secs(600))
        );
    }

    #[tokio::test]
    async fn unknown_names_list_what_exists() {
        let file = kubeconfig();
        let message = |flags: Connection| async move {
            match load_config(&flags).await {
                Err(KubeError::Config(message)) => message,
                Err(other) => panic!("{other}"),
                Ok(_) => panic!("loaded"),
            }
        };
        let mut flags = args(&file);
        flags.context = Some("nope".into());
        let text = message(flags).await;
        assert!(text.contains("no context \"nope\""), "{text}");
        assert!(text.contains("it defines one, two"), "{text}");
        let mut flags = args(&file);
        flags.cluster = Some("c9".into());
        let text = message(flags).await;
        assert!(text.contains("no cluster \"c9\""), "{text}");
        assert!(text.contains("it defines c1, c2"), "{text}");
        let mut flags = args(&file);
        flags.user = Some("u9".into());
        let text = message(flags).await;
        assert!(text.contains("no user \"u9\""), "{text}");

        let mut empty = tempfile::NamedTempFile::new().unwrap();
        empty.write_all(b"apiVersion: v1\nkind: Config\n").unwrap();
        let text = message(args(&empty)).await;
        assert!(text.contains("sets no current-context"), "{text}");

        let mut broken = tempfile::NamedTempFile::new().unwrap();
        broken.write_all(b"clusters: [\n").unwrap();
        let text = message(args(&broken)).await;
        assert!(text.contains("not a kubeconfig"), "{text}");
    }

    #[tokio::test]
    async fn several_kubeconfig_files_merge_in_order() {
        let first = kubeconfig();
        let mut second = tempfile::NamedTempFile::new().unwrap();
        second
            .write_all(b"apiVersion: v1\nkind: Config\ncurrent-context: two\n")
            .unwrap();
        let joined = std::env::join_paths([first.path(), second.path()]).unwrap();
        let merged = read_kubeconfig(Path::new(&joined)).unwrap();
        // The first file to set a value wins, as in kubectl.
        assert_eq!(merged.current_context.as_deref(), Some("one"));
        assert_eq!(merged.contexts.len(), 2);
    }
}
