//! The server a command talks to and the operator credential it shows: [`ServerArgs`], flattened
//! into every command that calls the API, resolved into a [`Connection`].

use std::path::PathBuf;

use clap::Args;

/// A server to talk to, and the operator credential to show it. Each comes from the first of:
/// the flag, the environment, the context `hotswap login` remembered (`--context`, else the one
/// for `--server`, else the current one), and the defaults of a server started here.
#[derive(Args, Clone, Default)]
pub struct ServerArgs {
    /// The server's URL [default: the context's, else http://127.0.0.1:8080].
    #[arg(long, env = "HOTSWAP_SERVER", global = true)]
    pub server: Option<String>,
    /// A server `hotswap login` remembered, by name [default: the current one].
    #[arg(long, env = "HOTSWAP_CONTEXT", global = true)]
    pub context: Option<String>,
    /// The API token. Prefer `HOTSWAP_TOKEN`, `--token-file` or `hotswap login`: a flag is
    /// seen by `ps` and kept by the shell's history.
    #[arg(long, env = "HOTSWAP_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// A file holding the API token [default: the context's, else
    /// ./hotswap-data/admin.token, which `hotswap serve` writes on its first start].
    #[arg(long, global = true)]
    pub token_file: Option<PathBuf>,
    /// Trust this CA certificate (PEM) for an `https://` server, instead of the system's.
    #[arg(long, env = "HOTSWAP_CA_CERT", global = true)]
    pub ca_cert: Option<PathBuf>,
}

/// The server to use at the end of [`ServerArgs`]' choices.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

/// Where a command connects, and with what.
#[derive(Debug, Clone)]
pub struct Connection {
    pub url: String,
    pub token: String,
    pub ca_cert: Option<PathBuf>,
}

impl ServerArgs {
    /// The server's URL, as [`ServerArgs`] chooses it.
    pub fn url(&self) -> anyhow::Result<String> {
        let contexts = crate::contexts::Contexts::load(&crate::contexts::path()?)?;
        Ok(self.pick(&contexts)?.0)
    }

    fn pick(
        &self,
        contexts: &crate::contexts::Contexts,
    ) -> anyhow::Result<(String, Option<crate::contexts::Remembered>)> {
        let remembered = match (&self.context, &self.server) {
            (Some(name), _) => contexts.chosen(Some(name))?.map(|(_, c)| c.clone()),
            (None, Some(url)) => contexts.for_url(url).cloned(),
            (None, None) => contexts.chosen(None)?.map(|(_, c)| c.clone()),
        };
        let url = match (&self.server, &remembered) {
            (Some(url), _) => url.clone(),
            (None, Some(c)) => c.url.clone(),
            (None, None) => DEFAULT_SERVER.to_string(),
        };
        Ok((url.trim_end_matches('/').to_string(), remembered))
    }

    /// The server, the token and the CA, as [`ServerArgs`] chooses them.
    pub fn connection(&self) -> anyhow::Result<Connection> {
        let contexts = crate::contexts::Contexts::load(&crate::contexts::path()?)?;
        let (url, remembered) = self.pick(&contexts)?;
        let ca_cert = self
            .ca_cert
            .clone()
            .or_else(|| remembered.as_ref().and_then(|c| c.ca_cert.clone()));
        let token = if let Some(token) = self.token.as_deref().filter(|t| !t.trim().is_empty()) {
            token.trim().to_string()
        } else if let Some(path) = &self.token_file {
            read_token(path)?
        } else if let Some(c) = remembered {
            c.token
        } else {
            let path = PathBuf::from(hotswap_server::config::DEFAULT_DATA_DIR)
                .join(hotswap_server::ADMIN_TOKEN_FILE);
            read_token(&path).map_err(|e| {
                anyhow::anyhow!(
                    "no API token for {url}: run `hotswap login`, set HOTSWAP_TOKEN or give --token-file ({e})"
                )
            })?
        };
        Ok(Connection {
            url,
            token,
            ca_cert,
        })
    }

    /// A client of the server without a credential, for what needs none (a user changing
    /// their own password proves it with the current one).
    pub fn anonymous_client(&self) -> anyhow::Result<hotswap_client::Client> {
        let contexts = crate::contexts::Contexts::load(&crate::contexts::path()?)?;
        let (url, remembered) = self.pick(&contexts)?;
        let ca_certificate = self
            .ca_cert
            .clone()
            .or_else(|| remembered.and_then(|c| c.ca_cert));
        Ok(hotswap_client::Client::with_config(
            hotswap_client::ClientConfig {
                ca_certificate,
                ..hotswap_client::ClientConfig::new(&url)
            },
        )?)
    }

    /// The token alone.
    pub fn token(&self) -> anyhow::Result<String> {
        Ok(self.connection()?.token)
    }

    /// A client of the server with the token.
    pub fn client(&self) -> anyhow::Result<hotswap_client::Client> {
        self.connection()?.client()
    }
}

impl Connection {
    pub fn client(&self) -> anyhow::Result<hotswap_client::Client> {
        Ok(hotswap_client::Client::with_config(
            hotswap_client::ClientConfig {
                token: Some(self.token.clone()),
                ca_certificate: self.ca_cert.clone(),
                ..hotswap_client::ClientConfig::new(&self.url)
            },
        )?)
    }
}

/// The token a file holds, trimmed; an empty file is an error that names it.
pub fn read_token(path: &std::path::Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("reading the token file {}: {e}", path.display()))?;
    let token = text.trim();
    if token.is_empty() {
        anyhow::bail!("the token file {} is empty", path.display());
    }
    Ok(token.to_string())
}
