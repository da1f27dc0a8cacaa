//! `--kubeconfig --context --cluster --user --as --as-group --as-uid --request-timeout`,
//! with kubectl's meaning.

use super::KubeError;
use crate::cli::KubeArgs;
use ::kube::config::{KubeConfigOptions, Kubeconfig};
use ::kube::{Client, Config};
use std::path::Path;
use std::time::Duration;

/// A request client and a stream client for the same cluster and identity.
///
/// kubectl applies `--request-timeout` to single requests only; watches and log follows may be
/// quiet for minutes. The `streams` client therefore has no read timeout.
#[derive(Clone)]
pub struct Clients {
    /// For get/list/create/delete: honours `--request-timeout`.
    pub requests: Client,
    /// For watches and `logs --follow`: no read timeout.
    pub streams: Client,
    /// `-n`, else the context's namespace, else `default`.
    pub namespace: String,
}

/// The request client and the namespace commands default to.
pub async fn client(args: &KubeArgs) -> Result<(Client, String), KubeError> {
    let clients = clients(args).await?;
    Ok((clients.requests, clients.namespace))
}

/// Both clients, sharing one loaded configuration.
pub async fn clients(args: &KubeArgs) -> Result<Clients, KubeError> {
    let mut config = load_config(args).await?;
    apply_identity(&mut config, args);
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());

    let mut stream_config = config.clone();
    stream_config.read_timeout = None;
    config.read_timeout = request_timeout(args.request_timeout);

    let build = |config: Config| {
        Client::try_from(config)
            .map_err(|err| KubeError::Config(format!("building the client: {err}")))
    };
    Ok(Clients {
        requests: build(config)?,
        streams: build(stream_config)?,
        namespace,
    })
}

/// kubectl's `--request-timeout=0` means no timeout.
fn request_timeout(flag: Option<Duration>) -> Option<Duration> {
    flag.filter(|timeout| !timeout.is_zero())
}

/// A kubeconfig flag means that kubeconfig, exactly; only with none do we infer (which may fall
/// back to the in-cluster service account, as kubectl does).
async fn load_config(args: &KubeArgs) -> Result<Config, KubeError> {
    let options = KubeConfigOptions {
        context: args.context.clone(),
        cluster: args.cluster.clone(),
        user: args.user.clone(),
    };
    let explicit = args.kubeconfig.is_some()
        || options.context.is_some()
        || options.cluster.is_some()
        || options.user.is_some();
    if !explicit {
        return Config::infer()
            .await
            .map_err(|err| KubeError::Config(err.to_string()));
    }
    let kubeconfig = match &args.kubeconfig {
        Some(path) => read_kubeconfig(path)?,
        None => Kubeconfig::read().map_err(|err| KubeError::Config(err.to_string()))?,
    };
    Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|err| KubeError::Config(err.to_string()))
}

/// The kubeconfig the flags name (`--kubeconfig`, else `KUBECONFIG`, else ~/.kube/config).
pub fn kubeconfig(args: &KubeArgs) -> Result<Kubeconfig, KubeError> {
    match &args.kubeconfig {
        Some(path) => read_kubeconfig(path),
        None => Kubeconfig::read().map_err(|err| KubeError::Config(err.to_string())),
    }
}

/// `--kubeconfig` (or `KUBECONFIG`) may list several files, merged in order as kubectl does.
fn read_kubeconfig(paths: &Path) -> Result<Kubeconfig, KubeError> {
    let mut merged: Option<Kubeconfig> = None;
    for path in std::env::split_paths(paths.as_os_str()).filter(|p| !p.as_os_str().is_empty()) {
        let next = Kubeconfig::read_from(&path)
            .map_err(|err| KubeError::Config(format!("{}: {err}", path.display())))?;
        merged = Some(match merged {
            None => next,
            Some(done) => done
                .merge(next)
                .map_err(|err| KubeError::Config(err.to_string()))?,
        });
    }
    merged.ok_or_else(|| KubeError::Config("--kubeconfig names no file".into()))
}

fn apply_identity(config: &mut Config, args: &KubeArgs) {
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

    fn args(file: &tempfile::NamedTempFile) -> KubeArgs {
        KubeArgs {
            kubeconfig: Some(file.path().to_path_buf()),
            ..KubeArgs::default()
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
        assert_eq!(request_timeout(Some(Duration::ZERO)), None);
        assert_eq!(
            request_timeout(Some(Duration::from_secs(5))),
            Some(Duration::from_secs(5))
        );
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
