//! `hotswap login` and `hotswap logout`: a server and a credential remembered under a name, so
//! later commands need neither (see [`crate::contexts`]).

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use crate::contexts::{Contexts, Remembered};

#[derive(Args)]
pub struct LoginArgs {
    /// The server's URL.
    #[arg(long, env = "HOTSWAP_SERVER", default_value = crate::connection::DEFAULT_SERVER)]
    pub server: String,
    /// The name to remember it by [default: its host and port].
    #[arg(long)]
    pub context: Option<String>,
    /// Sign in as this user; the password comes from `HOTSWAP_PASSWORD` or standard input.
    #[arg(long, conflicts_with_all = ["token", "token_file"])]
    pub user: Option<String>,
    /// An API token (prefer `HOTSWAP_TOKEN` or `--token-file`: a flag is seen by `ps`).
    #[arg(long, env = "HOTSWAP_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// A file holding the API token.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Trust this CA certificate (PEM) for an `https://` server.
    #[arg(long, env = "HOTSWAP_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    /// Print what was remembered as JSON (never the credential).
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct LogoutArgs {
    /// The context to forget [default: the current one].
    #[arg(long)]
    pub context: Option<String>,
}

/// A password: `HOTSWAP_PASSWORD`, else read from the terminal without echo, else a line of
/// standard input.
pub fn password(prompt: &str) -> Result<String> {
    password_from("HOTSWAP_PASSWORD", prompt)
}

/// A password: the variable `var`, else read from the terminal without echo, else a line of
/// standard input.
pub fn password_from(var: &str, prompt: &str) -> Result<String> {
    if let Ok(p) = std::env::var(var) {
        return Ok(p);
    }
    let p = if std::io::stdin().is_terminal() {
        rpassword::prompt_password(prompt).context("reading the password")?
    } else {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .context("reading the password from standard input")?;
        line.trim_end_matches(['\r', '\n']).to_string()
    };
    if p.is_empty() {
        anyhow::bail!(crate::usage::UsageError("no password given".into()));
    }
    Ok(p)
}

/// The context name for a URL: its host and port.
fn name_for(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest).to_string()
}

pub async fn login(a: LoginArgs, out: &mut dyn Write) -> Result<()> {
    let url = a.server.trim_end_matches('/').to_string();
    let client_for = |token: &str| {
        hotswap_client::Client::with_config(hotswap_client::ClientConfig {
            token: (!token.is_empty()).then(|| token.to_string()),
            ca_certificate: a.ca_cert.clone(),
            ..hotswap_client::ClientConfig::new(&url)
        })
    };
    let (token, identity, expires_at) = if let Some(user) = &a.user {
        let password = password(&format!("password for {user} at {url}: "))?;
        let session = client_for("")?
            .login(user, &password)
            .await
            .with_context(|| format!("signing in to {url} as {user}"))?;
        (
            session.token,
            format!("user:{} ({})", session.name, session.role),
            Some(session.expires_at.0),
        )
    } else {
        let token = match (&a.token, &a.token_file) {
            (Some(t), _) if !t.trim().is_empty() => t.trim().to_string(),
            (_, Some(path)) => std::fs::read_to_string(path)
                .with_context(|| format!("reading the token file {}", path.display()))?
                .trim()
                .to_string(),
            _ => anyhow::bail!(crate::usage::UsageError(
                "log in with --user NAME, or an API token from HOTSWAP_TOKEN, --token-file or --token".into()
            )),
        };
        let hint: String = token
            .chars()
            .rev()
            .take(4)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        (token, format!("API token ...{hint}"), None)
    };
    // The credential is tried before it is kept: a typo fails here, not at the next command.
    client_for(&token)?
        .deployments()
        .await
        .with_context(|| format!("checking the credential with {url}"))?;
    let name = a.context.clone().unwrap_or_else(|| name_for(&url));
    let path = crate::contexts::path()?;
    let mut contexts = Contexts::load(&path)?;
    contexts.servers.insert(
        name.clone(),
        Remembered {
            url: url.clone(),
            token,
            identity: identity.clone(),
            ca_cert: a.ca_cert.clone(),
            expires_at,
        },
    );
    contexts.current = Some(name.clone());
    contexts.save(&path)?;
    if a.json {
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "context": name,
                "server": url,
                "identity": identity,
                "expiresAt": expires_at,
                "file": path,
            }))?
        )?;
    } else {
        writeln!(
            out,
            "logged in to {url} as {identity}; context `{name}` is now the current one ({})",
            path.display()
        )?;
    }
    Ok(())
}

pub fn logout(a: LogoutArgs, out: &mut dyn Write) -> Result<()> {
    let path = crate::contexts::path()?;
    let mut contexts = Contexts::load(&path)?;
    let Some((name, _)) = contexts.chosen(a.context.as_deref())? else {
        anyhow::bail!(crate::usage::UsageError(
            "not logged in anywhere: no context to forget".into()
        ));
    };
    let name = name.to_string();
    let gone = contexts.servers.remove(&name).expect("chosen exists");
    if contexts.current.as_deref() == Some(name.as_str()) {
        contexts.current = None;
    }
    contexts.save(&path)?;
    writeln!(
        out,
        "logged out of {} (context `{name}` forgotten{})",
        gone.url,
        if gone.expires_at.is_some() {
            "; the session ends at its expiry"
        } else {
            "; the API token itself still works until revoked"
        }
    )?;
    Ok(())
}
