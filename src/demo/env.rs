//! A whole local environment: Prometheus, nginx, the local backend and its controller.
//! Used by `serin demo` and the e2e tests; everything it started stops on drop.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::local::{
    LocalCluster, LocalConfig, LocalController, LocalError, LocalState, NginxServer,
    PrometheusServer, StateStore,
};

/// Binaries and places for a [`LocalEnv`].
#[derive(Clone, Debug)]
pub struct EnvOptions {
    /// Scratch directory (state file, logs, Prometheus data, nginx prefix).
    pub dir: PathBuf,
    pub app_binary: PathBuf,
    pub prometheus_binary: PathBuf,
    pub nginx_binary: PathBuf,
    pub scrape_interval: Duration,
}

impl EnvOptions {
    /// Debian's paths for prometheus and nginx (`/usr/sbin` is not on every PATH).
    pub fn new(dir: impl Into<PathBuf>, app_binary: impl Into<PathBuf>) -> Self {
        let sbin_nginx = Path::new("/usr/sbin/nginx");
        Self {
            dir: dir.into(),
            app_binary: app_binary.into(),
            prometheus_binary: PathBuf::from("prometheus"),
            nginx_binary: if sbin_nginx.exists() {
                sbin_nginx.to_path_buf()
            } else {
                PathBuf::from("nginx")
            },
            scrape_interval: Duration::from_secs(1),
        }
    }
}

pub struct LocalEnv {
    pub opts: EnvOptions,
    pub prometheus: PrometheusServer,
    pub nginx: NginxServer,
    pub controller: LocalController,
    pub state_file: PathBuf,
    /// Controllers replaced by [`LocalEnv::restart_controller`]: they still hold the
    /// handles of the processes they spawned, needed to reap them at the end.
    retired: Vec<LocalController>,
}

impl LocalEnv {
    /// Start Prometheus and nginx, write `state` as the state file, build the controller.
    pub async fn start(opts: EnvOptions, state: &LocalState) -> Result<Self, LocalError> {
        std::fs::create_dir_all(&opts.dir).map_err(|e| LocalError::io(&opts.dir, e))?;
        if !opts.app_binary.exists() {
            return Err(LocalError::Spawn {
                program: opts.app_binary.display().to_string(),
                message: "the demo app binary does not exist (cargo build --bins)".into(),
            });
        }
        let prometheus = PrometheusServer::start(
            &opts.prometheus_binary,
            &opts.dir.join("prometheus"),
            opts.scrape_interval,
        )
        .await?;
        let nginx = NginxServer::start(&opts.nginx_binary, &opts.dir.join("nginx")).await?;
        let state_file = opts.dir.join("state.json");
        StateStore::new(&state_file).create(state)?;
        let controller = Self::controller(&opts, &prometheus, &nginx, &state_file)?;
        Ok(Self {
            opts,
            prometheus,
            nginx,
            controller,
            state_file,
            retired: Vec::new(),
        })
    }

    fn controller(
        opts: &EnvOptions,
        prometheus: &PrometheusServer,
        nginx: &NginxServer,
        state_file: &Path,
    ) -> Result<LocalController, LocalError> {
        let cluster = LocalCluster::new(LocalConfig {
            app_binary: opts.app_binary.clone(),
            state_file: state_file.to_path_buf(),
            log_dir: opts.dir.join("logs"),
            nginx: nginx.control.clone(),
            targets_file: Some(prometheus.targets_file.clone()),
            ready_timeout: Duration::from_secs(10),
        })?;
        Ok(LocalController::new(cluster, &prometheus.url()))
    }

    /// Throw the controller away and build a new one from the state file alone: what a
    /// restarted serin process has. Instances keep running and are adopted.
    pub fn restart_controller(&mut self) -> Result<(), LocalError> {
        let fresh = Self::controller(&self.opts, &self.prometheus, &self.nginx, &self.state_file)?;
        self.retired
            .push(std::mem::replace(&mut self.controller, fresh));
        Ok(())
    }

    pub fn cluster(&self) -> &Arc<LocalCluster> {
        self.controller.cluster()
    }

    pub fn load(&self) -> Result<LocalState, LocalError> {
        StateStore::new(&self.state_file).load()
    }

    /// Stop every instance recorded in the state file, nginx and Prometheus.
    pub fn shutdown(&mut self) {
        self.cluster().stop_all();
        for c in &self.retired {
            c.cluster().stop_all();
        }
        self.nginx.stop();
        self.prometheus.stop();
    }
}

impl Drop for LocalEnv {
    fn drop(&mut self) {
        self.shutdown();
    }
}
