//! The built-in strategies and the default health policy, built from `strategies/` by the host's
//! build script and embedded as components. They load through the same checks as uploads.

use hotswap_protocol::PluginKind;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/builtin_plugins.rs"));
}

/// One built-in plugin.
#[derive(Debug, Clone, Copy)]
pub struct Builtin {
    /// The name operators use, for example `canary`.
    pub name: &'static str,
    pub kind: PluginKind,
    /// The component.
    pub bytes: &'static [u8],
}

pub const BUILTINS: [Builtin; 6] = [
    Builtin {
        name: "direct",
        kind: PluginKind::Strategy,
        bytes: embedded::DIRECT,
    },
    Builtin {
        name: "regional",
        kind: PluginKind::Strategy,
        bytes: embedded::REGIONAL,
    },
    Builtin {
        name: "canary",
        kind: PluginKind::Strategy,
        bytes: embedded::CANARY,
    },
    Builtin {
        name: "blue-green",
        kind: PluginKind::Strategy,
        bytes: embedded::BLUE_GREEN,
    },
    Builtin {
        name: "rolling",
        kind: PluginKind::Strategy,
        bytes: embedded::ROLLING,
    },
    Builtin {
        name: "default",
        kind: PluginKind::HealthPolicy,
        bytes: embedded::HEALTH_DEFAULT,
    },
];

/// The built-in plugin of that kind called `name`, ignoring case, `-` and `_`, so the design's
/// `Canary` and `BlueGreen` name the same plugins as `canary` and `blue-green`.
pub fn builtin(kind: PluginKind, name: &str) -> Option<&'static Builtin> {
    let wanted = normalize(name);
    BUILTINS
        .iter()
        .find(|b| b.kind == kind && normalize(b.name) == wanted)
}

fn normalize(name: &str) -> String {
    name.chars()
        .filter(|c| *c != '-' && *c != '_')
        .flat_map(char::to_lowercase)
        .collect()
}
