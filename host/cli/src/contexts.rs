//! The servers `hotswap login` remembers, as `gh` keeps hosts and `kubectl` contexts: a TOML
//! file in the user's configuration directory, readable by its owner only (mode 0600), with
//! one entry per server by name and the one commands use when none is named.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// The file's name inside the configuration directory.
pub const CONTEXTS_FILE: &str = "hotswap/config.toml";

/// Where the file is: `$HOTSWAP_CONFIG_DIR/config.toml` when that is set (tests, several
/// identities on one account), else the user's configuration directory
/// (`$XDG_CONFIG_HOME` or `~/.config` on Linux).
pub fn path() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("HOTSWAP_CONFIG_DIR") {
        return Ok(PathBuf::from(dir).join("config.toml"));
    }
    let dir = dirs::config_dir()
        .context("no configuration directory: set HOME, XDG_CONFIG_HOME or HOTSWAP_CONFIG_DIR")?;
    Ok(dir.join(CONTEXTS_FILE))
}

/// Every server remembered.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Contexts {
    /// The context commands use when none is named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<String>,
    #[serde(default)]
    pub servers: BTreeMap<String, Remembered>,
}

/// One server and the credential to show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Remembered {
    pub url: String,
    pub token: String,
    /// Who the credential is (`token:ci`, `user:ana`), as the server named it at login.
    #[serde(default)]
    pub identity: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<PathBuf>,
    /// A session's end (seconds since the epoch); none for an API token that does not expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
}

impl Contexts {
    /// The file at `path`; none yet is no context.
    pub fn load(path: &Path) -> Result<Contexts> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                toml::from_str(&text).with_context(|| format!("reading {}", path.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Contexts::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Writes the file whole: to a new file of mode 0600 beside it, then renamed over it, so a
    /// crash leaves the old file or the new one and no other account ever reads a token.
    pub fn save(&self, path: &Path) -> Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let text = toml::to_string(self).context("writing the contexts")?;
        let partial = path.with_extension("toml.partial");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&partial)
            .with_context(|| format!("creating {}", partial.display()))?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .with_context(|| format!("writing {}", partial.display()))?;
        std::fs::rename(&partial, path).with_context(|| format!("writing {}", path.display()))
    }

    /// The context named `name`, else the current one.
    pub fn chosen(&self, name: Option<&str>) -> Result<Option<(&str, &Remembered)>> {
        match name.or(self.current.as_deref()) {
            None => Ok(None),
            Some(n) => match self.servers.get_key_value(n) {
                Some((k, c)) => Ok(Some((k.as_str(), c))),
                None if name.is_some() => anyhow::bail!(
                    "no context `{n}`: `hotswap login --context {n}` makes it (known: {})",
                    self.names()
                ),
                None => Ok(None),
            },
        }
    }

    /// The context whose server is `url`, if one is.
    pub fn for_url(&self, url: &str) -> Option<&Remembered> {
        let url = url.trim_end_matches('/');
        self.servers
            .values()
            .find(|c| c.url.trim_end_matches('/') == url)
    }

    fn names(&self) -> String {
        if self.servers.is_empty() {
            "none".into()
        } else {
            self.servers.keys().cloned().collect::<Vec<_>>().join(", ")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contexts_survive_a_save_and_the_file_is_the_owners_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/config.toml");
        assert_eq!(Contexts::load(&path).unwrap(), Contexts::default());
        let mut c = Contexts::default();
        c.servers.insert(
            "prod".into(),
            Remembered {
                url: "https://hotswap.example:8443".into(),
                token: "hsw_pat_secret".into(),
                identity: "token:ci".into(),
                ca_cert: None,
                expires_at: None,
            },
        );
        c.current = Some("prod".into());
        c.save(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let back = Contexts::load(&path).unwrap();
        assert_eq!(back, c);
        assert_eq!(back.chosen(None).unwrap().unwrap().0, "prod");
        assert!(back.for_url("https://hotswap.example:8443/").is_some());
        let err = back.chosen(Some("staging")).unwrap_err().to_string();
        assert!(
            err.contains("no context `staging`") && err.contains("prod"),
            "{err}"
        );
    }
}
